"""``artifact-vault prefetch --image``: against the real distribution registry, images built
by the tests."""

from __future__ import annotations

import pytest

from artifact_vault.prefetch import Job

from .registry_fixtures import build_image, build_index, push, sha256_digest
from .test_prefetch import prefetch, rows
from .test_registry import blobs_in, hub, pull
from .conftest import vault_config

SHARED = b"a layer both images have\n"


@pytest.fixture
def images(registry, tmp_path):
    index = build_index(tmp_path / "idx", "multi", [("amd64", [SHARED, b"amd64 only\n"]),
                                                    ("arm64", [SHARED, b"arm64 only\n"])])
    multi = push(index, "team/multi:1", registry)
    single = push(build_image(tmp_path / "img", "v1", [SHARED]), "team/other:v1", registry)
    registry.clear_requests()
    return index, multi, single


def test_a_platform_subset_fetches_only_those_childrens_blobs_and_shared_blobs_once(
        registry, images, make_vault, tmp_path):
    index, multi, single = images
    arm = index.image("arm64")
    config = vault_config(tmp_path / "cache", [hub(registry)], log_level="WARNING")
    job = Job(images=("hub/team/multi:1", "hub/team/other:v1"), image_platforms=("linux/arm64",))
    code, out, _ = prefetch(config, job)
    assert code == 0, out
    wanted = set(arm.blob_digests) | set(single.blob_digests)
    assert registry.blob_gets() == {d: 1 for d in wanted}  # no amd64 blob; SHARED once
    assert rows(out)["hub/team/multi:1 [linux/arm64]"] == "fetched"

    registry.stop()  # an offline Vault on the same cache serves the arm64 image whole
    offline = make_vault([hub(registry)], offline=True)
    out_dir = pull(offline.url, "hub/team/multi:1", tmp_path / "arm", "--override-arch", "arm64")
    assert sha256_digest((out_dir / "manifest.json").read_bytes()) == arm.digest
    assert blobs_in(out_dir) == set(arm.blob_digests)


def test_platform_all_fetches_every_child_and_an_unknown_platform_fails(registry, images,
                                                                       tmp_path):
    index, multi, _ = images
    config = vault_config(tmp_path / "cache", [hub(registry)], log_level="WARNING")
    code, out, _ = prefetch(config, Job(images=("hub/team/multi:1",), image_platforms=("all",)))
    assert code == 0, out
    assert set(registry.blob_gets()) == set(index.blob_digests)
    code, out, _ = prefetch(config, Job(images=(f"hub/team/multi@{multi.digest}",),
                                        image_platforms=("linux/s390x",)))
    assert code == 1
    assert "no child for linux/s390x; it has linux/amd64, linux/arm64" in out
