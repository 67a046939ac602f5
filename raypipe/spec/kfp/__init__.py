"""Kubeflow Pipelines compatibility: read KFP's compiled PipelineSpec into raypipe's IR.

Example:
    >>> from raypipe.spec.kfp import is_kfp_spec
    >>> is_kfp_spec({"pipelineInfo": {"name": "p"}, "root": {}})
    True
"""

from raypipe.spec.kfp.ir import KfpConversion, KfpExecutor, KfpPlaceholder, convert, is_kfp_spec

__all__ = ["KfpConversion", "KfpExecutor", "KfpPlaceholder", "convert", "is_kfp_spec"]
