"""The ``tripwire`` command: one entry point, a subcommand per process."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tripwire.errors import TripwireError
from tripwire.logs import redact_text, settings_error

log = logging.getLogger("tripwire")

NO_PREFORK_HELP = (
    "start each detector worker from scratch instead of forking it from a standby process "
    "that has done the imports (~0.35 GiB resident, no model, no GPU memory)"
)


def _settings_overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "broker", None):
        out["broker"] = {"url": args.broker}
    return out


def _cmd_token(args: argparse.Namespace) -> int:
    from tripwire.camera_config import OperatorConfig
    from tripwire.contract import check_camera_id
    from tripwire.tokens import hash_token, new_token

    if args.operator:
        token = new_token()
        entry = OperatorConfig(name=args.camera, token_hash=hash_token(token))
        print(f"operator token for {entry.name} (shown once; keep it in a password manager):")
        print(f"  {token}\n")
        print("paste under `operators:` in your config file:")
        print(f'  - name: {entry.name}\n    token_hash: "{entry.token_hash}"')
        return 0
    camera = check_camera_id(args.camera)
    token = new_token()
    print(f"token for {camera} (shown once; give it to the camera):\n  {token}\n")
    print("paste into the camera's entry in your config file:")
    print(f'  - id: {camera}\n    token_hash: "{hash_token(token)}"')
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from tripwire.settings import GatewaySettings
    from tripwire.starter import write_starter_config

    settings = GatewaySettings()
    path, tokens_path = write_starter_config(settings.home, args.cameras, force=args.force)
    print(f"wrote {path} ({args.cameras} camera(s)); their tokens are in {tokens_path} (mode 600)")
    print(f"the console's operator token is in {settings.home / 'operator-token'} (mode 600)")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from tripwire.camera_config import load_config

    cameras = load_config(args.file)
    print(
        f"{args.file}: ok, {len(cameras.cameras)} camera(s): "
        + ", ".join(c.id for c in cameras.cameras)
        + (f"; model(s): {', '.join(m.name for m in cameras.models)}" if cameras.models else "")
    )
    return 0


def _cmd_deploy_render(args: argparse.Namespace) -> int:
    from tripwire.camera_config import load_config
    from tripwire.errors import ConfigError
    from tripwire.model_manifests import write

    root = Path(__file__).resolve().parents[2]  # the checkout this package runs from
    if not (root / "deploy" / "k3s").is_dir():
        raise ConfigError(f"{root}/deploy/k3s not found: run deploy render from a checkout")
    for path in write(load_config(args.config), args.broker, args.out, root):
        print(path)
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.app import create_app, preflight
    from gateway.fastpath import IngestFastPath
    from gateway.server import server
    from tripwire.broker_endpoint import resolve_broker
    from tripwire.brokers import open_broker, routes_of
    from tripwire.camera_config import load_config
    from tripwire.settings import GatewaySettings

    settings = GatewaySettings(**_settings_overrides(args, "config", "host", "port"))
    _logging(settings.log_level)
    cameras = load_config(settings.config_path())
    if not cameras.cameras:
        log.warning("no cameras configured: every POST will be answered 401 (see --config)")
    endpoint = resolve_broker(settings)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default
    # action that would end the process before the embedded NATS server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        routes = routes_of(cameras)  # every model's consumer exists before the first frame
        asyncio.run(preflight(settings, open_broker(settings.broker, endpoint.url, routes=routes)))
        app = create_app(
            settings, cameras, open_broker(settings.broker, endpoint.url, routes=routes)
        )
        gateway, sockets = server(IngestFastPath(app), settings)
        gateway.run(sockets)
    finally:
        endpoint.stop()
    return 0


def _cmd_motion(args: argparse.Namespace) -> int:
    import asyncio

    from functions.motion.cameras import run_pull_mode
    from tripwire.settings import MotionSettings

    settings = MotionSettings(**_settings_overrides(args, "config", "camera", "source"))
    _logging(settings.log_level)
    return asyncio.run(run_pull_mode(settings, max_frames=args.max_frames))


def _cmd_cameras(args: argparse.Namespace) -> int:
    import asyncio

    from functions.motion.cameras import run_cameras
    from tripwire.settings import MotionSettings

    settings = MotionSettings(**_settings_overrides(args, "config", "metrics_port"))
    _logging(settings.log_level)
    return asyncio.run(run_cameras(settings))


def _cmd_detector(args: argparse.Namespace) -> int:
    import asyncio

    from functions.detector.run import run_detector
    from tripwire.settings import DetectorSettings

    overrides = _settings_overrides(
        args, "config", "weights", "task", "device", "batch_size", "metrics_port", "model"
    )
    settings = DetectorSettings(**overrides)
    _logging(settings.log_level)
    return asyncio.run(run_detector(settings))


def _cmd_events(args: argparse.Namespace) -> int:
    import asyncio

    from functions.events.run import run_events
    from tripwire.settings import EventsSettings

    settings = EventsSettings(**_settings_overrides(args, "config", "metrics_port"))
    _logging(settings.log_level)
    return asyncio.run(run_events(settings))


def _cmd_console(args: argparse.Namespace) -> int:
    from console.app import create_app
    from console.serve import serve
    from console.session import key_from_db_url
    from tripwire.archive import open_archive
    from tripwire.camera_config import load_config
    from tripwire.eventstore import Store
    from tripwire.settings import ConsoleSettings

    overrides = _settings_overrides(args, "config", "host")
    if args.port is not None:
        overrides["console_port"] = args.port
    settings = ConsoleSettings(**overrides)
    _logging(settings.log_level)
    cameras = load_config(settings.config_path())
    if not cameras.operators:
        log.warning("no operators configured: every API call will be answered 401")
    db = settings.events_db
    store = Store(
        db.resolved_url(settings.home),
        pool_size=db.pool_size,
        connect_timeout_s=db.connect_timeout_s,
    )
    broker = None
    if settings.broker.url:  # live updates on the pages; without a broker they reload
        from console.live import open_live_broker

        broker = open_live_broker(settings.broker, settings.broker.url, cameras)
    key = (
        settings.session_key.get_secret_value().encode()
        if settings.session_key
        else key_from_db_url(db.resolved_url(settings.home))
    )
    app = create_app(
        cameras,
        store,
        open_archive(settings.archive, settings.home),
        retry_after_s=settings.retry_after_s,
        broker=broker,
        session_key=key,
        home=settings.home,
    )
    serve(app, settings.host, settings.console_port, settings.log_level.lower())
    return 0


def _stack_options(args: argparse.Namespace) -> Any:
    from tripwire.app.stack import StackOptions
    from tripwire.settings import DetectorSettings, GatewaySettings

    gateway = GatewaySettings(**_settings_overrides(args, "config", "host", "port"))
    detector = DetectorSettings(**_settings_overrides(args, "config", "weights", "task"))
    home = gateway.home
    home.mkdir(parents=True, exist_ok=True)
    return StackOptions(
        gateway,
        detector,
        console_port=args.console_port,
        policy=args.policy,
        timeline_path=args.timeline or home / "timeline.jsonl",
        prefork=not args.no_prefork,
    )


def _cmd_up(args: argparse.Namespace) -> int:
    import asyncio

    from tripwire.app.stack import run_up

    options = _stack_options(args)
    _logging(options.gateway.log_level)
    return asyncio.run(run_up(options))


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from tripwire.app.demo import DemoOptions, run_demo

    _logging("WARNING")
    options = DemoOptions(
        cameras=args.cameras,
        fps=args.fps,
        duration_s=args.duration,
        video=args.video,
        weights=args.weights,
        task=args.task,
        prefork=not args.no_prefork,
        keep_open=args.keep_open,
    )
    if args.home:
        options.home = args.home
    return asyncio.run(run_demo(options))


def _cmd_cluster_watch(args: argparse.Namespace) -> int:
    import asyncio
    import signal as signals

    from tripwire.brokers import open_broker, routes_of
    from tripwire.camera_config import load_config
    from tripwire.cluster import watch_cluster
    from tripwire.errors import ConfigError
    from tripwire.settings import CommonSettings

    settings = CommonSettings(**_settings_overrides(args))
    _logging(settings.log_level)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        broker = None
        if settings.broker.url:
            # --model: that model's consumer or queue (the config's models section).
            config = load_config(settings.config_path())
            if config.models and not args.model:
                # The default consumer or queue would be declared and keep every frame.
                names = ", ".join(m.name for m in config.models)
                raise ConfigError(
                    f"{settings.config_path()} declares models ({names}): name the one to "
                    "watch with --model (each has its own Deployment and consumer or queue)"
                )
            routes = routes_of(config) if args.model else None
            broker = open_broker(
                settings.broker, settings.broker.url, routes=routes, model=args.model
            )
            await broker.connect()
        deployment = args.deployment or (
            f"tripwire-detector-{args.model}" if args.model else "tripwire-detector"
        )
        try:
            await watch_cluster(
                args.namespace,
                deployment,
                args.out,
                kubeconfig=args.kubeconfig,
                depth=broker.depth if broker else None,
                interval_s=args.interval,
                stop=stop,
            )
        finally:
            if broker is not None:
                await broker.close()
        return 0

    return asyncio.run(run())


def _cmd_cluster_wake(args: argparse.Namespace) -> int:
    import asyncio
    import signal as signals

    from tripwire.wake.service import WakeSettings, run_wake

    overrides = _settings_overrides(args, "namespace", "kubeconfig", "metrics_port")
    if args.deployment:
        overrides["deployments"] = args.deployment
    settings = WakeSettings(**overrides)
    _logging(settings.log_level)

    async def run() -> int:
        stop = asyncio.Event()
        for sig in (signals.SIGINT, signals.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await run_wake(settings, stop)

    return asyncio.run(run())


def _cmd_bench_energy(args: argparse.Namespace) -> int:
    import asyncio

    from tripwire.app.energy.bench import EnergyOptions, run_bench

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = EnergyOptions(
        cameras=args.cameras,
        fps=args.fps,
        duration_s=args.duration,
        duty_cycles=args.duty_cycle,
        video=args.video,
        out=args.out,
        modes=args.modes,
        idle_s=args.idle,
        interval_s=args.interval,
        weights=args.weights,
        repeats=args.repeats,
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        profile=args.profile,
        drain_timeout_s=args.drain_timeout,
    )
    summary = asyncio.run(run_bench(options))
    print(json.dumps({m: v["energy_j"] for m, v in summary["modes"].items()}))
    if not summary["equal_work"]:
        print("equal work: NO (a mode left a backlog or detected other frames); see report.md")
    return 0


def _logging(level: str) -> None:
    from tripwire.logs import configure

    configure(level)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tripwire",
        description="Motion-gated, scale-to-zero video analytics. Settings come from TRIPWIRE_* "
        "environment variables; flags override them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int] | None, help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if fn is not None:
            p.set_defaults(func=fn)
        return p

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="camera config YAML (env TRIPWIRE_CONFIG)")
        p.add_argument("--broker", help="nats://… or amqp://…; unset = embedded NATS server")

    p = add("gateway", _cmd_gateway, "run the camera ingest gateway with the motion function")
    common(p)
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8080)")

    p = add(
        "motion",
        _cmd_motion,
        "pull mode: read a file, rtsp:// stream or /dev/videoN and publish motion frames",
    )
    common(p)
    p.add_argument("--source", required=True, help="video file, rtsp:// URL or /dev/videoN")
    p.add_argument("--camera", required=True, help="camera id from the config file")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")

    p = add(
        "cameras",
        _cmd_cameras,
        "pull every camera that declares a source: (rtsp://, http(s) stream or snapshot, file, "
        "device) and publish its motion frames; reconnects dropped streams",
    )
    common(p)
    p.add_argument("--metrics-port", type=int, help="/metrics port (default 9109, 0 = free port)")

    p = add(
        "detector",
        _cmd_detector,
        "run the YOLO detector: consume motion frames, archive, publish results and alerts",
    )
    common(p)
    p.add_argument("--weights", help="model weights (.pt/.onnx/.tflite) or .yaml (untrained)")
    p.add_argument("--task", choices=["detect", "classify"], help="model task if not inferred")
    p.add_argument("--device", help="auto (default), cpu, cuda:0, ...")
    p.add_argument("--batch-size", type=int, help="frames per inference call at most")
    p.add_argument("--metrics-port", type=int, help="/metrics and /readyz port (0 = free port)")
    p.add_argument("--model", help="serve this model of the config's models: section, by name")

    p = add(
        "events",
        _cmd_events,
        "run the events function: one record per motion event, alert rules, notifications",
    )
    common(p)
    p.add_argument("--metrics-port", type=int, help="/metrics port (default 9111, 0 = free)")

    p = add("console", _cmd_console, "serve the events API (and console) over the events db")
    p.add_argument("--config", help="camera config YAML with `operators:` (env TRIPWIRE_CONFIG)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8090)")

    p = add(
        "up",
        _cmd_up,
        "run the whole pipeline on this machine: broker, gateway with "
        "motion, local scaler, detector workers on demand, archive",
    )
    common(p)
    p.add_argument("--host", help="gateway listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gateway port (default 8080)")
    p.add_argument(
        "--console-port", type=int, default=8090, help="events API / console port (default 8090)"
    )
    p.add_argument("--weights", help="detector weights (.pt/.onnx/.tflite) or .yaml")
    p.add_argument("--task", choices=["detect", "classify"], help="model task if not inferred")
    p.add_argument(
        "--policy",
        type=Path,
        help="ScaledObject YAML (default deploy/keda/<broker>/scaledobject.yaml)",
    )
    p.add_argument(
        "--timeline",
        type=Path,
        help="JSONL timeline of events (default $TRIPWIRE_HOME/timeline.jsonl)",
    )
    p.add_argument("--no-prefork", action="store_true", help=NO_PREFORK_HELP)

    p = add("demo", _cmd_demo, "tripwire up plus simulated cameras, a live view and a summary")
    p.add_argument("--cameras", type=int, default=2, help="simulated cameras (default 2)")
    p.add_argument("--fps", type=float, default=10.0, help="frames/s per camera (default 10)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds of camera traffic")
    p.add_argument("--video", type=Path, help="loop this clip instead of the generated scene")
    p.add_argument("--weights", help="detector weights (default yolo11n.pt, else untrained)")
    p.add_argument("--task", choices=["detect", "classify"], help="model task if not inferred")
    p.add_argument("--home", type=Path, help="state dir (default .tripwire/demo)")
    p.add_argument(
        "--keep-open", action="store_true", help="keep the console up after the demo (Ctrl-C)"
    )
    p.add_argument("--no-prefork", action="store_true", help=NO_PREFORK_HELP)

    p = add("cluster", None, "follow tripwire on a k3s/Kubernetes cluster")
    cluster = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    watch = cluster.add_parser(
        "watch",
        help="write the detector's replicas and the queue depth as a JSONL timeline",
        description="write the detector Deployment's replicas and the queue depth as the same "
        "JSONL timeline the local scaler writes",
    )
    watch.add_argument("--broker", help="broker URL for the queue depth (port-forward it)")
    watch.add_argument("--namespace", default="tripwire")
    watch.add_argument("--deployment", help="default tripwire-detector[-<model>]")
    watch.add_argument("--model", help="a model of the config's models section (its queue)")
    watch.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    watch.add_argument("--interval", type=float, default=5.0, help="depth poll seconds")
    watch.add_argument("--out", type=Path, default=Path("cluster-timeline.jsonl"))
    watch.set_defaults(func=_cmd_cluster_watch)
    wake = cluster.add_parser(
        "wake",
        help="scale the detector Deployment 0 -> 1 on the gateway's wake signal",
        description="push activation on a cluster: on each wake signal, set the detector "
        "Deployment's /scale to 1 if it is at 0 and its ScaledObject is not paused",
    )
    wake.add_argument("--broker", help="nats://… or amqp://… (env TRIPWIRE_BROKER__URL)")
    wake.add_argument("--namespace", help="default tripwire")
    wake.add_argument("--deployment", action="append", help="repeatable; default tripwire-detector")
    wake.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    wake.add_argument("--metrics-port", type=int, help="/metrics and /readyz (default 9110)")
    wake.set_defaults(func=_cmd_cluster_wake)

    p = add("deploy", None, "cluster manifests")
    deploy = p.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    render = deploy.add_parser(
        "render",
        help="one detector Deployment + ScaledObject per model of the config's models section",
        description="write detector-<model>.yaml (Deployment, PodDisruptionBudget, "
        "ScaledObject) per model and a kustomization.yaml over deploy/k3s/overlays/<broker> "
        "that replaces the single shipped detector with them",
    )
    render.add_argument("--config", required=True, type=Path, help="camera config with models:")
    render.add_argument("--broker", choices=["nats", "rabbitmq"], default="nats")
    render.add_argument("--out", type=Path, default=Path("deploy-models"), help="output folder")
    render.set_defaults(func=_cmd_deploy_render)

    p = add("bench", None, "benchmarks on this machine")
    bench = p.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    energy = bench.add_parser(
        "energy",
        help="device energy and memory, equal work: always-on vs scale-to-zero "
        "(without and with the prefork standby)",
        description="Run the same seeded camera frames through every mode on a local stack "
        "until each queue drains; energy by component (idle floor, resident model, inference, "
        "cold starts), measured through NVML/RAPL where present, else modelled from a device "
        "profile; write report.md, summary.json, PNG plots and the raw JSONL samples.",
    )
    energy.add_argument("--cameras", type=int, default=2)
    energy.add_argument("--fps", type=float, default=10.0)
    energy.add_argument("--duration", type=float, default=60.0, help="cameras on, seconds")
    energy.add_argument(
        "--duty-cycle",
        type=float,
        nargs="+",
        default=[0.2],
        help="share of time someone is in the scene; several values: a sweep",
    )
    energy.add_argument("--video", type=Path, help="loop this clip instead of a generated scene")
    energy.add_argument("--out", type=Path, default=Path("bench-energy"))
    energy.add_argument(
        "--modes",
        nargs="+",
        choices=["always-on", "scale-to-zero", "scale-to-zero-standby"],
        default=["always-on", "scale-to-zero", "scale-to-zero-standby"],
    )
    energy.add_argument("--idle", type=float, default=20.0, help="idle tail after the drain, s")
    energy.add_argument("--interval", type=float, default=1.0, help="sampling interval, s")
    energy.add_argument("--weights", help="detector weights (default: yolo11n.pt if obtainable)")
    energy.add_argument("--repeats", type=int, default=1, help="runs per mode, interleaved")
    energy.add_argument("--replicas", type=int, default=1, help="always-on's fixed replicas")
    energy.add_argument(
        "--max-replicas",
        type=int,
        help="scale-to-zero's maxReplicaCount (default: --replicas, the same capacity)",
    )
    energy.add_argument(
        "--profile",
        default="v100",
        help="device power profile: v100, t4, a10, a40, a100, h100, h200, cpu, or a YAML path",
    )
    energy.add_argument(
        "--drain-timeout", type=float, default=180.0, help="longest wait for the queue to drain, s"
    )
    energy.set_defaults(func=_cmd_bench_energy)
    from tripwire.app.fleet_commands import add_bench_fleet, add_trace_commands

    add_bench_fleet(bench)
    add_trace_commands(sub)

    p = add("init", _cmd_init, "write a starter camera config under TRIPWIRE_HOME (dev setup)")
    p.add_argument("--cameras", type=int, default=1, help="how many cameras (cam-1, cam-2, …)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config")

    p = add("token", None, "manage camera tokens")
    tok = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = tok.add_parser(
        "new",
        help="print a fresh token once and the config line to paste",
        description="print a fresh token once and the config line to paste",
    )
    new.add_argument("camera", help="camera id (or operator name with --operator)")
    new.add_argument(
        "--operator", action="store_true", help="a console operator's token instead of a camera's"
    )
    new.set_defaults(func=_cmd_token)

    p = add("config", None, "camera config file tools")
    cfg = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg.add_parser(
        "check", help="validate a camera config file", description="validate a camera config file"
    )
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as exc:
        print(f"tripwire {args.command}: {settings_error(exc)}", file=sys.stderr)
        return 2
    except TripwireError as exc:
        print(f"tripwire {args.command}: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
