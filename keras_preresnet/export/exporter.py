"""One export run: every requested format built, checked against Keras, then published together.

Layout under ``out``::

    <name>/<version>/            SavedModel (TF Serving's model base path is out/<name>)
        assets.extra/parity.json assets.extra/serving.json
    <name>-tflite/<version>/     float32.tflite [float16.tflite dynamic.tflite int8.tflite] parity.json serving.json
    <name>-onnx/<version>/       model.onnx parity.json serving.json
    <name>-float/<version>/      SavedModel with only the float input (format saved_model_float)
        assets.extra/parity.json assets.extra/serving.json

``serving.json`` (``keras_preresnet.runtimes``) holds the labels, preprocessing and input size that
``python -m keras_preresnet.predict`` needs to run the artifact.

Nothing is published until every artifact is written and every float artifact matches the Keras model
within ``parity.FLOAT_TOLERANCE``; then each version folder is renamed into place.
"""

import dataclasses
import os
import shutil

import keras_preresnet
from keras_preresnet import files
import keras_preresnet.export.images as images
import keras_preresnet.export.onnx as onnx
import keras_preresnet.export.parity as parity
import keras_preresnet.export.saved_model as saved_model
import keras_preresnet.export.tflite as tflite
import keras_preresnet.export.versions as versions
from keras_preresnet import runtimes

FORMATS = ("saved_model", "tflite", "onnx", "saved_model_float")
FORMAT_SUFFIX = {"saved_model": "", "tflite": "-tflite", "onnx": "-onnx", "saved_model_float": "-float"}
SAVED_MODEL_REPORT = os.path.join("assets.extra", parity.REPORT_FILENAME)
SCRATCH = ".float-savedmodel"


@dataclasses.dataclass
class ExportResult:
    """Published folders by format, the version, and every parity report."""

    version: int
    paths: dict
    reports: list


def _check_list(name, values, allowed):
    values = tuple(values)
    unknown = [v for v in values if v not in allowed]
    if unknown or not all(isinstance(v, str) for v in values):
        raise ValueError(f"`{name}` must be a subset of {allowed}; received {name}={list(values)!r}.")
    return tuple(dict.fromkeys(values))


def _check_out(out):
    # The first existing folder on the way must be a folder: os.makedirs would fail deep inside.
    existing = os.path.abspath(os.fspath(out))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"`out` must be a folder (or a path to create one); {existing!r} is a file; received out={out!r}.")


def format_base(out, name, fmt):
    return os.path.join(os.fspath(out), name + FORMAT_SUFFIX[fmt])


def _check_formats(formats, quantize, calibration_data):
    formats = _check_list("formats", formats, FORMATS)
    quantize = _check_list("quantize", quantize, tflite.QUANTIZED)
    if not formats:
        raise ValueError("`formats` is empty; choose at least one of " + ", ".join(FORMATS) + ".")
    if quantize and "tflite" not in formats:
        raise ValueError(f"Quantised variants {list(quantize)} are TFLite models; add 'tflite' to the formats.")
    if "int8" in quantize and calibration_data is None:
        raise ValueError("int8 quantisation needs a representative dataset: pass calibration_data (--calibration_data DIR).")
    return formats, quantize


def _image_files(parity_data, calibration_data, parity_images, calibration_images):
    """The parity images (by default the calibration folder's) and the calibration images, or None."""
    calibration_files = (
        images.list_images(calibration_data, calibration_images, "calibration") if calibration_data is not None else None
    )
    if parity_data is None and calibration_data is None:
        raise ValueError(
            "Parity is measured on real images: pass parity_data (--parity_data DIR of JPEG/PNG images) "
            "or calibration_data."
        )
    parity_files = images.list_images(
        parity_data if parity_data is not None else calibration_data, parity_images, "parity"
    )
    return parity_files, calibration_files


def export_model(
    servable,
    out,
    formats=("saved_model",),
    quantize=(),
    version=None,
    parity_data=None,
    calibration_data=None,
    parity_images=32,
    calibration_images=100,
    fold_batchnorm=False,
    log=print,
):
    """Exports ``servable`` (see ``export.build``) to ``out`` and proves every artifact against Keras.

    Args:
        servable: an ``export.Servable`` (Keras model, name, labels, preprocessing).
        out: the output folder; artifacts go to ``out/<name>[-tflite|-onnx]/<version>/``.
        formats: any of ``'saved_model'``, ``'tflite'`` (always with float32), ``'onnx'``,
            ``'saved_model_float'`` (a SavedModel whose one signature takes preprocessed floats, for
            converters that cannot read the default SavedModel's string input).
        quantize: extra TFLite variants: any of ``'float16'``, ``'dynamic'``, ``'int8'``.
        version: the version number; by default one more than the highest already under ``out``.
        parity_data: folder of JPEG/PNG images the parity reports are measured on; by default
            ``calibration_data``.
        calibration_data: folder of JPEG/PNG images for int8 calibration (the representative dataset).
        parity_images, calibration_images: how many images of each folder to use (sorted by name).
        fold_batchnorm: export the model with BatchNorm folded into its convolutions
            (``keras_preresnet.fold_batchnorm``); parity is still measured against the unfolded model.
        log: where progress and the parity table are printed.

    Returns:
        ``ExportResult``. Raises ``parity.ParityError`` (publishing nothing) if a float artifact
        differs from Keras by more than ``parity.FLOAT_TOLERANCE``.
    """
    formats, quantize = _check_formats(formats, quantize, calibration_data)
    _check_out(out)
    parity_files, calibration_files = _image_files(parity_data, calibration_data, parity_images, calibration_images)
    bases = {fmt: format_base(out, servable.name, fmt) for fmt in formats}
    version = versions.next_version(bases.values()) if version is None else versions.check_version(version)

    for base in bases.values():
        for path in versions.remove_stale_staging(base):
            log(f"Removed {path}, left behind by an export that was killed.")
    staged = {}
    try:
        for fmt in formats:
            staged[fmt] = versions.StagedVersion(bases[fmt], version)
        log(f"Exporting {servable.name} version {version} ({', '.join(formats)}) on {len(parity_files)} parity images.")
        # TFLite and ONNX want straight-line graphs: looped stages are exported unrolled.
        servable = dataclasses.replace(servable, model=keras_preresnet.looped_models.unroll(servable.model))
        preprocessed = images.preprocessed_batch(servable, parity_files)
        reference = servable.model.predict(preprocessed, verbose=0)
        exported = servable
        if fold_batchnorm:
            exported = dataclasses.replace(servable, model=keras_preresnet.fold_batchnorm(servable.model))
        reports = _write_all(exported, staged, quantize, parity_files, preprocessed, reference, calibration_files, log)
        log(parity.format_table(reports))
        parity.check(reports)
        paths = {fmt: stage.publish() for fmt, stage in staged.items()}
    finally:
        for stage in staged.values():
            stage.discard()
    for fmt, path in paths.items():
        log(f"Published {fmt}: {path}")
    return ExportResult(version, paths, reports)


def _write_all(servable, staged, quantize, parity_files, preprocessed, reference, calibration_files, log):
    context = dict(model=servable.name, preprocessing=servable.preprocessing, parity_images=parity_files)
    record = dict(labels=servable.labels, preprocessing=servable.preprocessing, image_size=servable.image_size,
                  name=servable.name)
    reports = []
    if "saved_model" in staged:
        path = staged["saved_model"].path
        log("Writing SavedModel ...")
        module = saved_model.serving_module(servable)
        with files.writing(path):
            saved_model.save(*module, path)
        sm_reports = saved_model.verify(path, reference, parity_files, preprocessed)
        os.makedirs(os.path.dirname(os.path.join(path, SAVED_MODEL_REPORT)), exist_ok=True)
        parity.save(sm_reports, os.path.join(path, SAVED_MODEL_REPORT), **context)
        runtimes.write_record(os.path.join(path, runtimes.SAVED_MODEL_RECORD), **record)
        reports += sm_reports
    if "saved_model_float" in staged:
        path = staged["saved_model_float"].path
        log("Writing the float-only SavedModel ...")
        saved_model.write_probabilities_only(servable, path, signature=saved_model.SERVING_SIGNATURE)
        files.write_point()
        report = saved_model.verify_float_only(path, reference, preprocessed)
        os.makedirs(os.path.dirname(os.path.join(path, SAVED_MODEL_REPORT)), exist_ok=True)
        parity.save([report], os.path.join(path, SAVED_MODEL_REPORT), **context)
        runtimes.write_record(os.path.join(path, runtimes.SAVED_MODEL_RECORD), **record)
        reports.append(report)
    if "tflite" in staged or "onnx" in staged:
        # The converters' input lives in a staging folder (and goes before publishing), so a killed
        # export leaves it where the next export's clean-up of staging folders finds it.
        scratch = os.path.join(staged["tflite" if "tflite" in staged else "onnx"].path, SCRATCH)
        try:
            module = saved_model.probabilities_module(servable)
            with files.writing(scratch):
                saved_model.save(*module, scratch)
            if "tflite" in staged:
                reports += _write_tflite(staged["tflite"].path, scratch, servable, quantize, preprocessed,
                                         reference, calibration_files, context, log)
                runtimes.write_record(os.path.join(staged["tflite"].path, runtimes.RECORD_FILENAME), **record)
            if "onnx" in staged:
                path = os.path.join(staged["onnx"].path, onnx.FILENAME)
                log("Converting to ONNX ...")
                with files.writing(path):
                    onnx.convert(scratch, path)
                onnx_report = onnx.verify(path, reference, preprocessed)
                parity.save([onnx_report], os.path.join(staged["onnx"].path, parity.REPORT_FILENAME), **context)
                runtimes.write_record(os.path.join(staged["onnx"].path, runtimes.RECORD_FILENAME), **record)
                reports.append(onnx_report)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return reports


def _write_tflite(folder, float_saved_model, servable, quantize, preprocessed, reference, calibration_files,
                  context, log):
    calibration = images.preprocessed_batch(servable, calibration_files) if "int8" in quantize else None
    reports = []
    for variant in ("float32",) + quantize:
        log(f"Converting to TFLite {variant} ...")
        path = os.path.join(folder, tflite.filename(variant))
        files.write_bytes(path, tflite.convert(float_saved_model, variant, calibration))
        reports.append(tflite.verify(path, variant, reference, preprocessed))
    parity.save(reports, os.path.join(folder, parity.REPORT_FILENAME), **context)
    return reports
