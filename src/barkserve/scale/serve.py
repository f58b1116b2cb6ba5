"""The HTTP API on Ray Serve: the same Flask app as ingress, engine replicas as one deployment per model.

    HTTP -> Serve proxy -> ApiIngress (create_app's Flask app under a2wsgi: same routes, errors, keys,
            metrics, streaming)  -- Synthesizer -> RayEngine --DeploymentHandle--> EngineReplica
                                                                (one model, one batched engine each)

The ingress holds only the tokenizer and the voice presets; the weights live in the replicas, which
autoscale on their ongoing requests. Each replica's batched engine batches what reaches it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from barkserve.config import ServerConfig
from barkserve.engine.base import Engine, EngineLoad, GeneratedAudio, GenerationRequest
from barkserve.errors import BarkServeError, ConfigError, NotOnRay, ReplicaLost
from barkserve.models import LoadedModel, ModelRegistry

APP_NAME = "barkserve"
# A request whose replica died is sent again (the same seed makes the same audio) for this long,
# while Serve replaces the replica.
REPLICA_RETRY_SEC = 120.0


@dataclass(frozen=True)
class RayServeConfig:
    """How many engine replicas of each model, and what each one reserves."""

    min_replicas: int = 1
    max_replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    # Autoscaling aims at this many requests in progress per replica (its engine batches them).
    target_ongoing_requests: float = 4.0
    # Requests one replica takes at once; the rest queue in the ingress's handle.
    max_ongoing_requests: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ConfigError(
                f"replicas: need 0 <= min <= max and max >= 1; got min {self.min_replicas}, max {self.max_replicas}"
            )
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            raise ConfigError("gpus and cpus per replica must be >= 0")
        if self.target_ongoing_requests <= 0 or self.max_ongoing_requests < 1:
            raise ConfigError("target_ongoing_requests must be > 0 and max_ongoing_requests >= 1")

    def deployment_options(self) -> dict[str, Any]:
        return {
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            },
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_gpus": self.gpus_per_replica, "num_cpus": self.cpus_per_replica},
        }


class EngineReplica:
    """One model and one engine (continuous batching over the concurrent requests that reach it)."""

    def __init__(self, config: ServerConfig, model: str, engine_factory: Callable[[LoadedModel], Engine] | None = None):
        from barkserve.engine.factory import make_engine
        from barkserve.models import load_model

        loaded = load_model(model, config)
        self.engine = engine_factory(loaded) if engine_factory else make_engine(loaded, config.engine)
        self.info = {"sample_rate": loaded.sample_rate, "device": str(loaded.device), "dtype": str(loaded.dtype)}
        # Serve's max_ongoing_requests caps the calls in progress; the pool is never the tighter limit.
        self._pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="replica")

    def describe(self) -> dict[str, Any]:
        """Sample rate, device and dtype of this replica's model, and its process id."""
        return {**self.info, "pid": os.getpid()}

    async def generate(self, request: GenerationRequest) -> GeneratedAudio:
        """Run one request on the engine; concurrent calls share its batches."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.generate, request)


class RayEngine:
    """The ingress's engine: tokenizes here, generates on the model's replicas through a DeploymentHandle."""

    def __init__(self, handle: Any, loaded: LoadedModel, retry_sec: float = REPLICA_RETRY_SEC) -> None:
        self.handle = handle
        self.loaded = loaded
        self.sample_rate = loaded.sample_rate
        self.retry_sec = retry_sec

    def tokenize(self, text: str) -> np.ndarray:
        from barkserve.engine.base import text_inputs

        return np.asarray(text_inputs(self.loaded.tokenizer, text))

    def load(self) -> EngineLoad:
        return EngineLoad()  # the queues are in the replicas (Ray Serve's autoscaler reads them)

    def close(self) -> None:
        """Nothing to stop here: the replicas belong to Ray Serve."""

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        """The replica's audio; a replica that dies is replaced and the request sent again (same seed)."""
        from ray.exceptions import RayActorError, RayTaskError

        deadline, pause = time.monotonic() + self.retry_sec, 0.2
        while True:
            try:
                result: GeneratedAudio = self.handle.generate.remote(request).result()
                return result
            except RayTaskError as exc:  # the engine raised: the same error as in one process
                if isinstance(exc.cause, BarkServeError):
                    raise exc.cause from None
                raise
            except RayActorError as exc:
                if time.monotonic() + pause > deadline:
                    raise ReplicaLost(
                        f"the engine replica running this request died and none took it over within "
                        f"{self.retry_sec:.0f} s ({type(exc).__name__}); retry later"
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class _WeightsInReplicas:
    """Stands in for the model's weights in the ingress: they live in the engine replicas."""

    def __getattr__(self, name: str) -> Any:
        raise NotOnRay(
            "this needs the model's weights in the HTTP process, which `serve --ray` keeps in its engine "
            "replicas (e.g. cloning a voice from audio); run `barkserve clone` and copy the .npz into --voices-dir"
        )


def ingress_synthesizer(config: ServerConfig, handles: dict[str, Any]) -> Any:
    """A Synthesizer whose models are tokenizers here and weights in the replicas behind `handles`."""
    from barkserve.synthesizer import Synthesizer

    def load(name: str, cfg: ServerConfig) -> LoadedModel:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.model_source(name), local_files_only=cfg.offline)
        info = handles[name].describe.remote().result()
        return LoadedModel(name, _WeightsInReplicas(), tokenizer, info["device"], info["dtype"], info["sample_rate"])

    registry = ModelRegistry(config, loader=load)
    return Synthesizer(config, registry, engine_factory=lambda loaded: RayEngine(handles[loaded.name], loaded))


class ApiIngress:
    """The Flask app of `create_app` as an ASGI app (a2wsgi): the same routes, errors, keys and metrics."""

    def __init__(self, config: ServerConfig, handles: dict[str, Any]) -> None:
        from barkserve.server import create_app

        self.synth = ingress_synthesizer(config, handles)
        self.flask = create_app(config, self.synth)
        self.threads = config.threads

    def __serve_build_asgi_app__(self) -> Any:
        from a2wsgi import WSGIMiddleware

        # a2wsgi sends each piece of a streamed body as it comes: streams stay streams.
        return WSGIMiddleware(cast(Any, self.flask), workers=self.threads)


def build_app(
    config: ServerConfig, scaling: RayServeConfig, engine_factory: Callable[[LoadedModel], Engine] | None = None
) -> Any:
    """The Serve application: one engine deployment per allowed model, bound into the ingress."""
    from ray import serve

    handles = {}
    for index, model in enumerate(config.allowed_models):
        engine = serve.deployment(name=f"engine-{index}", **scaling.deployment_options())(EngineReplica)
        handles[model] = engine.bind(config, model, engine_factory)
    ingress = serve.deployment(name="api", ray_actor_options={"num_cpus": 0})(serve.ingress()(ApiIngress))
    return ingress.bind(config, handles)


def deploy(
    config: ServerConfig,
    scaling: RayServeConfig,
    engine_factory: Callable[[LoadedModel], Engine] | None = None,
    route_prefix: str = "/",
) -> Any:
    """Start Serve's HTTP proxy on `config.host:port` and run the app (call `scale.connect` first)."""
    from ray import serve

    serve.start(http_options={"host": config.host, "port": config.port})
    return serve.run(build_app(config, scaling, engine_factory), name=APP_NAME, route_prefix=route_prefix)
