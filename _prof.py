import time, sys
t=time.time()
import numpy as np, keras
sys.path.insert(0,'tests')
import test_stages as T
T.SHAPE=(8,8,3); T.BLOCKS=(1,1,3)
print('import', time.time()-t); t=time.time()
u,l=T._pair("full_preactivation","basic","identity")
print('build', time.time()-t); t=time.time()
x=T._x()
T._training_step(u,x); print('step unrolled', time.time()-t); t=time.time()
T._training_step(l,x); print('step looped', time.time()-t); t=time.time()
