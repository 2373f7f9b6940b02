"""``edgemigrate doctor`` and ``edgemigrate testbed up|down|status``."""

from __future__ import annotations

import json

import click


def _row(name: str, ok: bool | None, value: str, note: str = "") -> str:
    mark = {True: "ok", False: "MISSING", None: "info"}[ok]
    return f"{name:<14} {mark:<8} {value:<22} {note}".rstrip()


@click.command()
def doctor() -> None:
    """Report what this machine supports for the real migration engine and the testbed."""
    from edgemigrate.testbed.capabilities import detect

    caps = detect(tools=True)
    lines = [f"{'item':<14} {'status':<8} {'value':<22} note", "-" * 78,
             _row("python", True, caps.python),
             _row("kernel", None, caps.kernel),
             _row("root", caps.root, "yes" if caps.root else "no",
                  "" if caps.root else "testbed, CRIU and runc need root")]
    for name in ("criu", "runc", "podman", "redis-server", "nsenter", "ip", "iptables"):
        t = caps.tools[name]
        lines.append(_row(name, t.ok, t.version or "-", t.detail or (t.path or "")))
    lines.append(_row("netem", None if not caps.netem else True, "yes" if caps.netem else "no",
                      "testbed still uses the TUN emulator" if caps.netem else "fallback: user-space TUN emulator"))
    lines.append(_row("tbf", caps.tbf, "yes" if caps.tbf else "no", "rate shaping" if caps.root else "probe needs root"))
    lines.append(_row("tun", caps.tun, "/dev/net/tun" if caps.tun else "no", "link emulator"))
    lines.append(_row("bbr", caps.bbr, "yes" if caps.bbr else "no",
                      "pinned in testbed hosts (congestion_control = \"bbr\")" if caps.bbr
                      else f"available: {' '.join(caps.congestion_controls)}"))
    click.echo("\n".join(lines))


@click.group()
def testbed() -> None:
    """Emulated edge hosts (network namespaces) with shaped links; needs root."""


@testbed.command()
@click.option("--scenario", "scenario", type=click.Path(dir_okay=False), default=None,
              help="TOML file whose [testbed] section describes hosts and links (default: the Ngo et al. 2020 profile).")
@click.option("--name", default="em", show_default=True, help="Testbed name (prefixes namespaces: NAME-edge1).")
def up(scenario: str | None, name: str) -> None:
    """Create the hosts, links and link emulator."""
    from edgemigrate.testbed import Testbed, load_config

    tb = Testbed.up(load_config(scenario), name=name)
    st = tb.status()
    click.echo(f"testbed '{name}' up: {len(st['hosts'])} hosts, emulator {st['emulator']}, "
               f"congestion control {st['congestion_control']}")
    for h in st["hosts"]:
        click.echo(f"  {h['name']:<10} {h['kind']:<7} {h['ip']:<15} /run/netns/{h['netns']}")
    if tb.mgmt_ip:
        click.echo(f"  root namespace reaches {tb.config.subnet} from {tb.mgmt_ip} (unshaped)")


@testbed.command()
@click.option("--name", default="em", show_default=True)
def down(name: str) -> None:
    """Remove the testbed and everything it created, including its agents' default state and image folders."""
    from edgemigrate.testbed import Testbed

    removed = Testbed.load(name).down()
    click.echo(f"testbed '{name}' down: removed {len(removed)} item(s)")


@testbed.command()
@click.option("--name", default=None, help="Testbed name (default: all that are up).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(name: str | None, as_json: bool) -> None:
    """Show hosts, links and service IPs."""
    from edgemigrate.testbed import Testbed

    names = [name] if name else Testbed.names()
    if not names:
        click.echo("no testbed is up")
        return
    for n in names:
        st = Testbed.load(n).status()
        if as_json:
            click.echo(json.dumps(st, indent=1))
            continue
        fwd = st["forwarder"]
        emu = (f"{st['emulator']} (pid {fwd['pid']}, {'running' if fwd['alive'] else 'NOT RUNNING'})"
               if st["emulator"] == "tun" else f"{st['emulator']} (kernel)")
        click.echo(f"testbed '{n}': emulator {emu}, cc {st['congestion_control']}")
        for h in st["hosts"]:
            click.echo(f"  {h['name']:<10} {h['kind']:<7} {h['ip']:<15} "
                       f"{'' if h['exists'] else '(namespace missing)'}".rstrip())
        click.echo(f"  {'link':<22} {'rate_mbit':>9} {'rtt_ms':>7} {'loss':>6}")
        for pair, spec in sorted(st["links"].items()):
            click.echo(f"  {pair.replace('|', ' - '):<22} {spec['rate_mbit']:>9g} {spec['rtt_ms']:>7g} "
                       f"{spec['loss']:>6g}")
        for ip, host in sorted(st["services"].items()):
            click.echo(f"  service {ip} on {host}")

