"""The ingress's RayEngine and the replicas' settings, without a cluster: retries, errors, validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ray.exceptions import RayActorError, RayTaskError

from barkserve.engine.base import GeneratedAudio
from barkserve.errors import ConfigError, InvalidRequest, ReplicaLost
from barkserve.models import LoadedModel
from barkserve.scale.serve import RayEngine, RayServeConfig

AUDIO = GeneratedAudio(np.zeros(240, dtype=np.float32), 24_000)


class Handle:
    """A DeploymentHandle whose `generate.remote(...).result()` gives the planned outcomes in turn."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes, self.calls = outcomes, 0
        self.generate = self

    def remote(self, request: Any) -> Handle:
        return self

    def result(self) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def engine(outcomes: list[Any], retry_sec: float = 60.0) -> tuple[RayEngine, Handle]:
    handle = Handle(outcomes)
    return RayEngine(handle, LoadedModel("m", None, None, "cpu", "float32", 24_000), retry_sec=retry_sec), handle


def test_a_request_whose_replica_died_is_sent_again() -> None:
    ray_engine, handle = engine([RayActorError(), RayActorError(), AUDIO])
    assert ray_engine.generate(object()) is AUDIO and handle.calls == 3  # type: ignore[arg-type]


def test_replicas_that_stay_dead_end_in_replica_lost() -> None:
    ray_engine, handle = engine([RayActorError()], retry_sec=0.0)
    with pytest.raises(ReplicaLost) as info:
        ray_engine.generate(object())  # type: ignore[arg-type]
    assert handle.calls == 1 and "died" in info.value.message


def test_an_engine_error_in_the_replica_is_the_same_error_here() -> None:
    cause = InvalidRequest("text_ids must be tokenizer ids")
    ray_engine, handle = engine([RayTaskError("generate", "traceback", cause)])
    with pytest.raises(InvalidRequest) as info:
        ray_engine.generate(object())  # type: ignore[arg-type]
    assert info.value is cause and handle.calls == 1  # not retried: the same request fails the same way


@pytest.mark.parametrize(
    "settings",
    [{"min_replicas": 3, "max_replicas": 2}, {"max_replicas": 0, "min_replicas": 0}, {"gpus_per_replica": -1},
     {"target_ongoing_requests": 0}],
)  # fmt: skip
def test_bad_replica_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RayServeConfig(**settings)


def test_replica_settings_become_serve_options() -> None:
    options = RayServeConfig(min_replicas=0, max_replicas=4, gpus_per_replica=0.5).deployment_options()
    assert options["autoscaling_config"] == {
        "min_replicas": 0, "initial_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4.0,
    }  # fmt: skip
    assert options["ray_actor_options"] == {"num_gpus": 0.5, "num_cpus": 1.0}


def test_each_model_has_its_own_engine_deployment_and_the_ingress_routes_by_model() -> None:
    from barkserve.config import ServerConfig
    from barkserve.scale.serve import build_app

    config = ServerConfig(model="small", models=("large",), asr_model="", speaker_model="")
    ingress = build_app(config, RayServeConfig(max_replicas=3))._bound_deployment
    assert ingress.name == "api" and ingress.ray_actor_options == {"num_cpus": 0}
    handles = ingress.init_args[1]
    assert sorted(handles) == ["suno/bark", "suno/bark-small"]
    engines = {model: app._bound_deployment for model, app in handles.items()}
    assert len({d.name for d in engines.values()}) == 2  # one deployment per model
    for model, deployment in engines.items():
        assert deployment.init_args[1] == model  # the replicas behind a model's handle load that model
        assert deployment._deployment_config.autoscaling_config.max_replicas == 3
