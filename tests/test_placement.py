"""Worker group names: what the generated RayCluster and the step's label selector share."""

from __future__ import annotations

import re

from raypipe.dsl.placement import DEFAULT_GROUP, worker_group

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_no_image_and_no_accelerator_is_the_default_group() -> None:
    assert worker_group(None, None) == DEFAULT_GROUP


def test_names_are_dns_labels_that_say_what_they_hold() -> None:
    for image, accelerator in [
        ("ghcr.io/acme/trainer:1.4", "H100"),
        ("localhost:5000/x@sha256:" + "a" * 64, None),
        (None, "NVIDIA_TESLA_V100"),
        ("registry/" + "very-long-name" * 10, "A100"),
        ("___", None),
    ]:
        name = worker_group(image, accelerator)
        assert _DNS_LABEL.match(name), name
        assert len(name) <= 40
    assert worker_group("ghcr.io/acme/trainer:1.4", "H100").startswith("trainer-h100-")


def test_one_base_name_in_two_registries_is_two_groups() -> None:
    assert worker_group("a/trainer:1", None) != worker_group("b/trainer:1", None)
    assert worker_group("a/trainer:1", None) == worker_group("a/trainer:1", None)
    assert worker_group("a/trainer:1", "H100") != worker_group("a/trainer:1", None)
