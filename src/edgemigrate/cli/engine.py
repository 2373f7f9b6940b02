"""``edgemigrate agent`` (host agent daemon + client commands) and ``edgemigrate migrate``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

from edgemigrate.control.client import DEFAULT_AGENT_PORT, AgentDirectory
from edgemigrate.control.spec import ServiceKind
from edgemigrate.testbed.paths import agent_image_dir, agent_state_dir

DEFAULT_PKI = Path("/run/edgemigrate/pki")


def _dir(testbed: str, pki: Path, port: int) -> AgentDirectory:
    return AgentDirectory.from_testbed(testbed, pki, port)


@click.group(invoke_without_command=True)
@click.option("--host", help="Name of this host (its certificate name); runs the agent daemon.")
@click.option("--listen", "listen_ip", help="Address to listen on (default: the host's testbed IP).")
@click.option("--port", type=int, default=DEFAULT_AGENT_PORT, show_default=True,
              help="Control port; the data port is PORT+1.")
@click.option("--pki", type=click.Path(path_type=Path),
              help="The agent daemon: its own folder with ca.pem and HOST.pem/.key [default: "
                   f"{DEFAULT_PKI}/hosts/HOST]; the subcommands: the operator's folder (CA, client key) "
                   f"[default: {DEFAULT_PKI}].")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Agent state [default: /run/edgemigrate/agents/TESTBED/HOST, removed by `testbed down`].")
@click.option("--image-dir", type=click.Path(path_type=Path),
              help="Checkpoint images, ideally tmpfs [default: /dev/shm/edgemigrate/TESTBED/HOST, removed by "
                   "`testbed down`].")
@click.option("--netns", help="Network namespace path of this host (default: the testbed's).")
@click.option("--testbed", default="em", show_default=True, help="Testbed whose service IPs this agent moves.")
@click.option("--io-timeout-s", type=float, default=20.0, show_default=True,
              help="No progress on a connection for this long aborts the migration.")
@click.option("--data-rcvbuf-mb", type=click.FloatRange(min=0),
              help="Receive buffer of incoming data connections, fixed so TCP can ramp up at once "
                   "[default: 16]; 0 = the kernel's autotuning.")
@click.option("--inject-fault", type=click.Choice(["corrupt-chunk", "die-after-final-dump", "die-after-commit",
                                                          "die-after-restore", "unable-to-freeze",
                                                          "never-freezes", "live-read-fails",
                                                          "stall-after-freeze"]), hidden=True,
              help="Fault injection for the fault tests.")
@click.pass_context
def agent(ctx: click.Context, host: str | None, listen_ip: str | None, port: int, pki: Path,
          state_dir: Path | None, image_dir: Path | None, netns: str | None, testbed: str, io_timeout_s: float,
          data_rcvbuf_mb: float | None, inject_fault: str | None) -> None:
    """Run the host agent daemon (`agent --host NAME`) or talk to agents (`agent status|deploy|stop|pki`)."""
    ctx.ensure_object(dict)
    ctx.obj.update(pki=pki or DEFAULT_PKI, port=port, testbed=testbed)
    if ctx.invoked_subcommand is not None:
        return
    if host is None:
        raise click.UsageError("give --host NAME to run the agent, or a subcommand")
    from edgemigrate.control.agent import Agent, AgentConfig
    from edgemigrate.testbed.testbed import Testbed

    if listen_ip is None or netns is None:
        tb = Testbed.load(testbed)
        listen_ip = listen_ip or tb.host_ip(host)
        netns = netns or tb.netns_path(host)
    from edgemigrate.core.ids import check_id
    from edgemigrate.engine.transport.tls import host_dir

    check_id(host, "--host")
    check_id(testbed, "--testbed")
    extra = {} if data_rcvbuf_mb is None else {"data_rcvbuf_bytes": int(data_rcvbuf_mb * (1 << 20))}
    cfg = AgentConfig(host=host, listen_ip=listen_ip, port=port, pki_dir=pki or host_dir(DEFAULT_PKI, host),
                      state_dir=state_dir or agent_state_dir(testbed, host),
                      image_root=image_dir or agent_image_dir(testbed, host), netns_path=netns,
                      testbed=testbed, io_timeout_s=io_timeout_s, fault=inject_fault, **extra)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    click.echo(f"agent {host} on {listen_ip}:{port} (data {port + 1})", err=True)
    asyncio.run(Agent(cfg).serve_forever())


@agent.command("pki")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_obj
def pki_cmd(obj: dict, hosts: tuple[str, ...]) -> None:
    """Create the CA and certificates for HOSTS (and the client) in --pki."""
    from edgemigrate.engine.transport.tls import create_pki

    create_pki(obj["pki"], list(hosts))
    click.echo(f"PKI in {obj['pki']}: CA and client key (keep them with the operator); each agent gets only its "
               f"own folder: {', '.join(str(obj['pki'] / 'hosts' / h) for h in hosts)}")


@agent.command("status")
@click.argument("host")
@click.pass_obj
def status_cmd(obj: dict, host: str) -> None:
    """Services known to HOST's agent."""
    from edgemigrate.control import client

    d = _dir(obj["testbed"], obj["pki"], obj["port"])
    click.echo(json.dumps(asyncio.run(client.status(d, host)), indent=1))


@agent.command("deploy")
@click.argument("name")
@click.option("--on", "host", required=True, help="Host to run it on.")
@click.option("--kind", type=click.Choice([k.value for k in ServiceKind]), default="counter", show_default=True)
@click.option("--ip", help="Service IP (default: the testbed's first service IP).")
@click.option("--port", "svc_port", type=int, default=7000, show_default=True)
@click.option("--resident-mb", type=float, default=0.0, show_default=True)
@click.option("--dirty-pages-per-s", type=float, default=0.0, show_default=True)
@click.pass_obj
def deploy_cmd(obj: dict, name: str, host: str, kind: str, ip: str | None, svc_port: int, resident_mb: float,
               dirty_pages_per_s: float) -> None:
    """Start service NAME on HOST (as a runc container)."""
    from edgemigrate.control import client
    from edgemigrate.control.spec import ServiceKind, ServiceSpec
    from edgemigrate.testbed.testbed import Testbed

    ip = ip or Testbed.load(obj["testbed"]).service_ip(0)
    spec = ServiceSpec(name, ServiceKind(kind), ip, svc_port, resident_mb, dirty_pages_per_s)
    d = _dir(obj["testbed"], obj["pki"], obj["port"])
    click.echo(asyncio.run(client.deploy(d, host, spec)))


@agent.command("stop")
@click.argument("name")
@click.option("--on", "host", required=True)
@click.pass_obj
def stop_cmd(obj: dict, name: str, host: str) -> None:
    """Stop service NAME on HOST."""
    from edgemigrate.control import client

    click.echo(asyncio.run(client.stop(_dir(obj["testbed"], obj["pki"], obj["port"]), host, name)))


@click.command()
@click.argument("service")
@click.option("--to", "to_host", required=True, help="Destination host.")
@click.option("--strategy", type=click.Choice(["stop-and-copy", "precopy"]), default="precopy", show_default=True)
@click.option("--testbed", default="em", show_default=True)
@click.option("--pki", type=click.Path(path_type=Path), default=DEFAULT_PKI, show_default=True)
@click.option("--port", type=int, default=DEFAULT_AGENT_PORT, show_default=True, help="Agents' control port.")
@click.option("--compression", default="model", show_default=True,
              help="Per-chunk codec selector: none, fixed:CODEC:LEVEL (e.g. fixed:zstd:3), rule (Zhang et al. 2019), "
                   "model, or model:CODEC (the model over one codec's levels, e.g. model:lz4 as in Zhang et al. 2019).")
@click.option("--page-codec", default="none", show_default=True,
              help="Codec for CRIU pages-*.img (e.g. wkdm); none = the selector's choice.")
@click.option("--pipeline", type=click.Choice(["pipelined", "serial"]), default="pipelined", show_default=True,
              help="Overlap compression with sending, or compress each chunk only after the previous was sent.")
@click.option("--precopy-read", type=click.Choice(["live", "dump"]), default="live", show_default=True,
              help="Pre-copy rounds read the service's memory while it runs, or as CRIU leave-running dumps (each "
                   "freezes the service while it writes all its memory when the kernel has no dirty tracking).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object.")
def migrate(service: str, to_host: str, strategy: str, testbed: str, pki: Path, port: int, compression: str,
            page_codec: str, pipeline: str, precopy_read: str, as_json: bool) -> None:
    """Move the running SERVICE to host --to (pre-copy deltas or stop-and-copy), compressed per chunk."""
    from edgemigrate.control import client
    from edgemigrate.engine.adaptive.config import CompressionConfig

    CompressionConfig.parse(compression, page_codec, pipeline)  # a typo fails here, before any agent is asked
    d = _dir(testbed, pki, port)

    def progress(ev: dict) -> None:
        r = ev.get("round")
        if r and not as_json:
            kind = "final (frozen)" if r["final"] else "pre-copy"
            click.echo(f"round {r['round']} {kind}: sent {r['payload_bytes'] / 1e6:.2f} MB "
                       f"({r.get('wire_bytes', 0) / 1e6:.2f} MB on the wire) of "
                       f"{r['image_bytes'] / 1e6:.2f} MB image in {r['transfer_s']:.2f} s", err=True)

    stats = asyncio.run(client.migrate(d, service, to_host, strategy, on_progress=progress, compression=compression,
                                       page_codec=page_codec, pipeline=pipeline, precopy_read=precopy_read))
    if as_json:
        click.echo(json.dumps(stats))
    else:
        click.echo(f"{service}: {stats.get('from')} -> {stats.get('to')} in {stats.get('total_s')} s; "
                   f"frozen window {stats.get('frozen_window_s')} s; final round {stats.get('final_round_bytes')} B "
                   f"of {stats.get('full_checkpoint_bytes')} B; {stats.get('bytes_on_wire')} B on the wire")
