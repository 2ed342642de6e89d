"""rmodelpack: package a trained R model as a secure, autoscaled REST scoring service.

The pipeline, as the command line runs it::

    import rmodelpack

    model = rmodelpack.load_manifest("examples/boston-rf")   # read and validated once
    built = rmodelpack.build(model, push=True, on_progress=print)
    rmodelpack.deploy(model, release="boston-rf", namespace="models")

The functions of the same name shadow the modules ``rmodelpack.render``, ``.build``, ``.size``,
``.serve`` and ``.deploy`` as attributes of the package; import their parts with
``from rmodelpack.build import build_image``.
"""

from rmodelpack.version import __version__  # noqa: I001 (first: every module reads it)
from rmodelpack.pipeline import build, deploy, load_manifest, push, render, serve, size

__all__ = [
    "__version__",
    "build",
    "deploy",
    "load_manifest",
    "push",
    "render",
    "serve",
    "size",
]
