import re

from setuptools import find_packages, setup

# Read, not imported: importing keras_preresnet would need Keras before it is installed.
VERSION = re.search(r'__version__ = "([^"]+)"', open("keras_preresnet/version.py", encoding="utf-8").read()).group(1)

# TensorFlow is an extra, as in keras-hub and tensorflow-datasets: pick `tf` (GPU-capable wheel) or
# `tf-cpu` (smaller, CPU only). The library itself also runs on Keras' JAX and PyTorch backends.
EXTRAS = {
    "tf": ["tensorflow>=2.21,<2.22"],
    "tf-cpu": ["tensorflow-cpu>=2.21,<2.22"],
    "train": ["tensorflow-datasets>=4.9.10", "importlib_resources", "matplotlib>=3.8", "tensorboard>=2.21"],
    "export": ["ai-edge-litert>=2.3", "tf2onnx>=1.17", "onnxruntime>=1.20", "onnx>=1.17"],
    "test": ["pytest>=8", "pytest-xdist>=3", "jax[cpu]>=0.4.30", "torch==2.13.0", "torchfile>=0.1.0"],
}
# Every optional feature (training, export); `test` adds what the test suite needs on top.
EXTRAS["all"] = sorted(set(EXTRAS["train"] + EXTRAS["export"]))
EXTRAS["bench"] = ["timm>=1.0.29"]  # kept out of "all": timm pulls a torchvision built for CUDA torch

setup(
    name="keras_preresnet",
    version=VERSION,
    description="Pre-activation ResNets (He et al., 2016) and the original ResNets in Keras 3, paper-exact.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_preresnet", "keras_preresnet.*"]),
    package_data={"keras_preresnet": ["data/*"]},
    # Keras up to the next minor release: looped stages translate weight files through Keras' file
    # layout (keras.src.saving.saving_lib), which a minor release may change; widen after the tests pass.
    install_requires=["keras>=3.15.1,<3.16", "numpy", "absl-py>=2", "h5py"],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "keras-preresnet=keras_preresnet.__main__:run",
            "keras-preresnet-predict=keras_preresnet.predict:run",
            "keras-preresnet-train=keras_preresnet.train.__main__:run",
            "keras-preresnet-export=keras_preresnet.export.__main__:run",
        ],
    },
    license="MIT",
)
