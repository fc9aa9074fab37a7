"""``ferry block``: rbd's verbs and argument shapes over any cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ferry.block import BlockImage, Cluster, ImageSpec, connect, ops
from ferry.block.auth import format_keyring
from ferry.block.embedded import EmbeddedCluster
from ferry.cli.progress import transfer_bar
from ferry.errors import InvalidRequest

app = typer.Typer(help="Block images: rbd's verbs on an embedded cluster or Ceph.")
snap_app = typer.Typer(help="Snapshots: create, ls, rm, protect, unprotect.")
auth_app = typer.Typer(help="Clients, keys and caps (embedded clusters).")
lock_app = typer.Typer(help="Advisory exclusive locks.")
app.add_typer(snap_app, name="snap")
app.add_typer(auth_app, name="auth")
app.add_typer(lock_app, name="lock")

err = Console(stderr=True, highlight=False, markup=False)


@dataclass(frozen=True)
class Target:
    cluster: str
    client: str
    keyring: Path | None

    def connect(self) -> Cluster:
        return connect(self.cluster, client=self.client, keyring=self.keyring)

    def embedded(self) -> EmbeddedCluster:
        cluster = self.connect()
        if not isinstance(cluster, EmbeddedCluster):
            raise InvalidRequest("this verb works on embedded clusters only")
        return cluster


@app.callback()
def options(
    ctx: typer.Context,
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster",
            "-c",
            envvar="FERRY_CLUSTER",
            help="An embedded cluster's directory, or ceph:CONF for a Ceph cluster.",
        ),
    ],
    client: Annotated[
        str, typer.Option("--id", help="Client name to act as (client.NAME).")
    ] = "admin",
    keyring: Annotated[
        Path | None,
        typer.Option(help="Keyring file; default DIR/<cluster>.client.<id>.keyring."),
    ] = None,
) -> None:
    ctx.obj = Target(cluster, client, keyring)


Spec = Annotated[str, typer.Argument(help="POOL/NAME")]
SnapSpec = Annotated[str, typer.Argument(help="POOL/NAME@SNAP")]


def _target(ctx: typer.Context) -> Target:
    target: Target = ctx.obj
    return target


@contextmanager
def _cluster(ctx: typer.Context) -> Iterator[Cluster]:
    cluster = _target(ctx).connect()
    try:
        yield cluster
    finally:
        cluster.close()


@contextmanager
def _image(ctx: typer.Context, text: str, *, snap_ok: bool = False) -> Iterator[BlockImage]:
    spec = ImageSpec.parse(text)
    if spec.snap and not snap_ok:
        raise InvalidRequest(f"{text}: this verb takes POOL/NAME, without @SNAP")
    with _cluster(ctx) as cluster, cluster.open(spec) as image:
        yield image


def _snap_spec(text: str) -> ImageSpec:
    spec = ImageSpec.parse(text)
    if spec.snap is None:
        raise InvalidRequest(f"{text}: this verb takes POOL/NAME@SNAP")
    return spec


@contextmanager
def _progress(total: int, what: str) -> Iterator[ops.Progress]:
    """A transfer bar on stderr, advanced by the increments ``ops`` reports."""
    done = 0
    with transfer_bar(what, total) as update:

        def advance(n: int) -> None:
            nonlocal done
            done += n
            update(done, total)

        yield advance


# --- cluster -------------------------------------------------------------------------------
@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The cluster's name (e.g. central, dcn0).")],
) -> None:
    """Create an embedded cluster: pools images/volumes/vms/backups and client.admin."""
    target = _target(ctx)
    keyring = EmbeddedCluster.init(Path(target.cluster), name)
    with _cluster(ctx) as cluster:
        typer.echo(f"cluster {cluster.name} fsid {cluster.fsid}")
    typer.echo(f"pools: {', '.join(cluster.list_pools())}")
    typer.echo(f"admin keyring: {keyring}")


@app.command("ls")
def ls(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="Pool to list.")] = "rbd",
    long: Annotated[
        bool, typer.Option("--long", "-l", help="NAME SIZE PARENT FMT PROT LOCK")
    ] = False,
) -> None:
    """List the block images of a pool."""
    with _cluster(ctx) as cluster:
        if long:
            typer.echo(ops.render_ls(ops.ls_long(cluster, pool)))
        else:
            for name in cluster.list_images(pool):
                typer.echo(name)


@app.command()
def create(
    ctx: typer.Context,
    spec: Spec,
    size: Annotated[str, typer.Option("--size", "-s", help="e.g. 10G, 512M, 4096")],
    order: Annotated[int, typer.Option(help="Object size as a power of two (22 = 4 MiB).")] = 22,
) -> None:
    """Create an empty (thin) block image."""
    s = ImageSpec.parse(spec)
    with _cluster(ctx) as cluster:
        cluster.create(s.pool, s.name, ops.parse_size(size), order=order)


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to import.")],
    spec: Spec,
    order: Annotated[int, typer.Option(help="Object size as a power of two (22 = 4 MiB).")] = 22,
) -> None:
    """Import a file as a new block image; zero ranges are never stored."""
    s = ImageSpec.parse(spec)
    with _cluster(ctx) as cluster, _progress(path.stat().st_size, f"import {s}") as step:
        moved = ops.import_file(cluster, path, s, order=order, progress=step)
    typer.echo(
        f"imported {ops.format_size(moved.size)} into {s}: "
        f"{ops.format_size(moved.written)} of data stored"
    )


@app.command()
def export(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="POOL/NAME[@SNAP]")],
    path: Annotated[Path, typer.Argument(help="Destination file (written sparse).")],
) -> None:
    """Export a block image or snapshot to a sparse file."""
    with (
        _image(ctx, spec, snap_ok=True) as image,
        _progress(image.stat().size, f"export {spec}") as step,
    ):
        moved = ops.export_file(image, path, progress=step)
    typer.echo(f"exported {ops.format_size(moved.size)} to {path}")


@app.command()
def resize(
    ctx: typer.Context, spec: Spec, size: Annotated[str, typer.Option("--size", "-s")]
) -> None:
    """Grow or shrink a block image."""
    with _image(ctx, spec) as image:
        image.resize(ops.parse_size(size))


@app.command("rm")
def rm(ctx: typer.Context, spec: Spec) -> None:
    """Remove a block image (refused while it has snapshots)."""
    s = ImageSpec.parse(spec)
    with _cluster(ctx) as cluster:
        cluster.remove(s.pool, s.name)


@app.command()
def info(ctx: typer.Context, spec: Annotated[str, typer.Argument(help="POOL/NAME[@SNAP]")]) -> None:
    """Show size, objects, features, parent and locks, as ``rbd info`` does."""
    with _image(ctx, spec, snap_ok=True) as image:
        st = image.stat()
    lines = [
        f"rbd image '{st.name}':",
        f"	size {ops.format_size(st.size)} in {st.num_objects} objects",
        f"	order {st.order} ({ops.format_size(st.object_size)} objects)",
        f"	snapshot_count: {st.snap_count}",
        "	format: 2",
        f"	features: {', '.join(st.features)}",
    ]
    if st.snap:
        lines.append(f"	protected: {'True' if st.protected else 'False'}")
    if st.parent:
        lines += [f"	parent: {st.parent}", f"	overlap: {ops.format_size(st.parent.overlap)}"]
    lines += [f"	locked by: client.{lk.client} cookie {lk.cookie}" for lk in st.lockers]
    typer.echo("\n".join(lines))


@app.command()
def clone(
    ctx: typer.Context,
    parent: SnapSpec,
    child: Annotated[str, typer.Argument(help="POOL/NAME of the new clone")],
) -> None:
    """Clone a protected snapshot into any pool of the same cluster (constant time)."""
    c = ImageSpec.parse(child)
    with _cluster(ctx) as cluster:
        cluster.clone(_snap_spec(parent), c.pool, c.name)


@app.command()
def flatten(ctx: typer.Context, spec: Spec) -> None:
    """Copy the parent's data into a clone and drop the link."""
    with _image(ctx, spec) as image:
        image.flatten()


@app.command()
def children(ctx: typer.Context, spec: SnapSpec) -> None:
    """List the clones of a snapshot."""
    s = _snap_spec(spec)
    with _image(ctx, f"{s.pool}/{s.name}") as image:
        for child in image.children(s.snap or ""):
            typer.echo(str(child))


@app.command()
def diff(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="POOL/NAME[@SNAP]")],
    from_snap: Annotated[
        str | None, typer.Option("--from-snap", help="Diff since this snapshot.")
    ] = None,
) -> None:
    """List the extents that differ since a snapshot (or since nothing)."""
    rows = [("Offset", "Length", "Type")]
    with _image(ctx, spec, snap_ok=True) as image:
        rows += [
            (str(e.offset), str(e.length), "data" if e.exists else "zero")
            for e in image.diff(from_snap)
        ]
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        typer.echo(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]}")


@app.command()
def du(ctx: typer.Context, spec: Spec) -> None:
    """Provisioned and used size (used counts only data written into this image)."""
    with _image(ctx, spec) as image:
        provisioned, used = ops.du(image)
    typer.echo(
        f"NAME  PROVISIONED  USED\n{spec}  {ops.format_size(provisioned)}  {ops.format_size(used)}"
    )


@app.command()
def check(ctx: typer.Context) -> None:
    """Verify every chunk's hash and every reference; report, never repair."""
    report = _target(ctx).embedded().check()
    for note in report.notes:
        typer.echo(f"note: {note}")
    for error in report.errors:
        err.print(f"error: {error}", style="red")
    typer.echo(
        f"checked {report.images} block images, {report.chunks} chunks: "
        + ("clean" if report.ok else f"{len(report.errors)} error(s)")
    )
    if not report.ok:
        raise typer.Exit(74)


@app.command()
def gc(ctx: typer.Context) -> None:
    """Remove chunks and files that nothing references."""
    r = _target(ctx).embedded().gc()
    typer.echo(
        f"removed {r.chunks} chunks, {r.segments} segments, {r.other} other files; "
        f"freed {ops.format_size(r.bytes_freed)}"
    )


# --- snapshots -----------------------------------------------------------------------------
@snap_app.command("create")
def snap_create(ctx: typer.Context, spec: SnapSpec) -> None:
    """Create a snapshot."""
    s = _snap_spec(spec)
    with _image(ctx, f"{s.pool}/{s.name}") as image:
        image.create_snap(s.snap or "")


@snap_app.command("ls")
def snap_ls(ctx: typer.Context, spec: Spec) -> None:
    """List snapshots."""
    with _image(ctx, spec) as image:
        snaps = image.list_snaps()
    typer.echo(f"{'SNAPID':>6}  {'NAME':<24} {'SIZE':>10}  PROTECTED")
    for sn in snaps:
        typer.echo(
            f"{sn.id:>6}  {sn.name:<24} {ops.format_size(sn.size):>10}  "
            f"{'yes' if sn.protected else ''}"
        )


def _snap_verb(name: str, method: str, doc: str) -> None:
    def verb(ctx: typer.Context, spec: SnapSpec) -> None:
        s = _snap_spec(spec)
        with _image(ctx, f"{s.pool}/{s.name}") as image:
            getattr(image, method)(s.snap)

    verb.__doc__ = doc
    snap_app.command(name)(verb)


_snap_verb("rm", "remove_snap", "Remove a snapshot (refused while protected).")
_snap_verb("protect", "protect_snap", "Protect a snapshot so it can be cloned.")
_snap_verb("unprotect", "unprotect_snap", "Unprotect a snapshot (refused while it has clones).")


# --- locks ---------------------------------------------------------------------------------
@lock_app.command("add")
def lock_add(ctx: typer.Context, spec: Spec, cookie: str) -> None:
    """Take an advisory exclusive lock (``rbd lock add``)."""
    with _image(ctx, spec) as image:
        image.lock_exclusive(cookie)


@lock_app.command("ls")
def lock_ls(ctx: typer.Context, spec: Spec) -> None:
    """Show who holds the lock."""
    with _image(ctx, spec) as image:
        for lk in image.stat().lockers:
            typer.echo(f"client.{lk.client}  {lk.cookie}  {lk.address}")


@lock_app.command("rm")
def lock_rm(ctx: typer.Context, spec: Spec, cookie: str) -> None:
    """Release an advisory lock this client holds."""
    with _image(ctx, spec) as image:
        image.unlock(cookie)


# --- clients -------------------------------------------------------------------------------
@auth_app.command("add")
def auth_add(
    ctx: typer.Context,
    entity: Annotated[str, typer.Argument(help="client.NAME")],
    caps: Annotated[
        list[str] | None,
        typer.Argument(help="SERVICE CAP pairs, as ceph auth add: mon 'profile rbd' osd '...'"),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Use this key instead of a new one.")] = None,
) -> None:
    """Add a client with caps; print its keyring."""
    pairs = caps or []
    if len(pairs) % 2:
        raise InvalidRequest("caps come in pairs: SERVICE 'CAP' (e.g. osd 'profile rbd')")
    added = (
        _target(ctx)
        .embedded()
        .auth_add(entity, dict(zip(pairs[::2], pairs[1::2], strict=True)), key)
    )
    typer.echo(format_keyring([added]), nl=False)


@auth_app.command("ls")
def auth_ls(ctx: typer.Context) -> None:
    """List clients and their caps (keys are not shown)."""
    for c in _target(ctx).embedded().auth_ls():
        typer.echo(c.entity)
        for svc, cap in sorted(c.caps.items()):
            typer.echo(f"\tcaps: [{svc}] {cap}")


@auth_app.command("get")
def auth_get(ctx: typer.Context, entity: str) -> None:
    """Print a client's keyring."""
    typer.echo(format_keyring([_target(ctx).embedded().auth_get(entity)]), nl=False)


@auth_app.command("del")
def auth_del(ctx: typer.Context, entity: str) -> None:
    """Remove a client."""
    _target(ctx).embedded().auth_del(entity)
