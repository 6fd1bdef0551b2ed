"""Models: the teacher (and, with compression, the students); built from a config dict."""
from __future__ import annotations

from torch import nn

from .student import Student, StudentConfig
from .teacher import Teacher, TeacherConfig

ARCHITECTURES = {"teacher": (Teacher, TeacherConfig), "student": (Student, StudentConfig)}


def build_model(config: dict) -> nn.Module:
    """Instantiate a model from its `to_dict()` form (`arch` names the class)."""
    config = dict(config)
    arch = config.pop("arch", "teacher")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    model_cls, config_cls = ARCHITECTURES[arch]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return model_cls(config_cls(**kwargs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ARCHITECTURES", "Student", "StudentConfig", "Teacher", "TeacherConfig", "build_model", "count_parameters"]
