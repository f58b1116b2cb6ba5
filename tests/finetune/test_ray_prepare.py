"""`finetune prepare --ray`: two Ray actors (a local 2-CPU cluster) make the folder one process makes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finetune_helpers import TEXTS

from barkserve.errors import ModelUnavailable
from barkserve.finetune.prepare import PrepareOptions, prepare_dataset
from barkserve.finetune.ray_prepare import prepare_ray


def test_ray_actors_prepare_the_folder_one_process_prepares(
    speech_dir: Path,
    encoders: Any,
    tiny_model_dir: Path,
    tiny_quantizer: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    import ray
    import soundfile as sf

    # Relative data, and the driver in another directory than the one the cluster's workers started in.
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    request.addfinalizer(ray.shutdown)
    monkeypatch.chdir(tmp_path)
    data = shutil.copytree(speech_dir, Path("data"))
    sf.write(data / "wavs" / "LJ001.wav", np.zeros(22050 * 2, dtype=np.float32), 22050)  # unusable: silent
    options = PrepareOptions(heldout=0.34, skip_bad=True)
    single = prepare_dataset(data, tmp_path / "single", encoders, options)

    # A run stopped after its first item, resumed on Ray: the item there is kept, the rest encoded by actors.
    out = tmp_path / "ray"
    (out / "items").mkdir(parents=True)
    shutil.copy(single / "prepare.json", out / "prepare.json")
    first = json.loads((single / "dataset.json").read_text())["items"][0]["id"]
    shutil.copy(single / "items" / f"{first}.npz", out / "items")
    load = {"model": str(tiny_model_dir), "quantizer": tiny_quantizer, "device": "cpu", "offline": True}
    progress: list[int] = []
    prepare_ray(data, out, load, options, workers=2, on_progress=progress.append)
    # An actor's error comes back as the library error it was.
    with pytest.raises(ModelUnavailable, match="could not be loaded") as info:
        prepare_ray(data, tmp_path / "bad", {**load, "model": str(tmp_path / "no-model")}, options)
    assert type(info.value) is ModelUnavailable  # not Ray's wrapper of it

    assert sum(progress) == len(TEXTS)
    assert (out / "dataset.json").read_bytes() == (single / "dataset.json").read_bytes()
    assert (out / "prepare.json").read_bytes() == (single / "prepare.json").read_bytes()
    meta = json.loads((out / "dataset.json").read_text())
    assert len(meta["items"]) == len(TEXTS) - 1 and len(meta["skipped"]) == 1
    assert meta["skipped"][0].startswith("metadata.csv line 2: the recording is silent")
    assert sorted(p.name for p in (out / "items").iterdir()) == sorted(p.name for p in (single / "items").iterdir())
    for item in meta["items"]:
        with np.load(single / "items" / f"{item['id']}.npz") as a, np.load(out / "items" / f"{item['id']}.npz") as b:
            assert sorted(a.files) == sorted(b.files) == ["codes", "seconds", "semantic", "text_ids"]
            for name in a.files:
                assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), (item["id"], name)
