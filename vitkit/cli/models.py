"""`vitkit models`: what the registry holds, and what one model resolves to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vitkit.cli._common import (
    Depth,
    Dropout,
    DropPath,
    EmbedDim,
    Heads,
    ImageSize,
    InChans,
    Json,
    MlpRatio,
    NumClasses,
    NumOutputs,
    PatchSize,
    Pool,
    console,
    emit_json,
    model_overrides,
    user_errors,
)

if TYPE_CHECKING:
    import torch

app = typer.Typer(help="List the registered models and inspect one.", no_args_is_help=True)


def _row(name: str, **overrides: Any) -> dict[str, Any]:
    from vitkit.models import get_entry, resolve_spec  # here: `--help` needs no torch

    spec = resolve_spec(name, **overrides)
    c = spec.config
    return {
        "name": name,
        "description": get_entry(name).description,
        "embed_dim": c.embed_dim,
        "depth": c.depth,
        "num_heads": c.num_heads,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "params": c.num_params(),
        "gflops": round(c.flops() / 1e9, 4),
    }


@app.command("list")
@user_errors
def list_(
    image_size: ImageSize = 32,
    patch_size: PatchSize = None,
    num_classes: NumClasses = 10,
    json_: Json = False,
) -> None:
    """Every registered model with its size and cost at one input size (default 32 px, 10 classes;
    each model's default patch for that size unless --patch-size)."""
    from vitkit.models import list_models

    given = {"patch_size": patch_size} if patch_size is not None else {}
    rows = [_row(n, image_size=image_size, num_classes=num_classes, **given) for n in list_models()]
    if json_:
        emit_json(rows)
        return
    table = Table(title=f"vitkit models at {image_size}x{image_size}, {num_classes} classes")
    for col in ("name", "embed dim", "depth", "heads", "patch", "params", "GFLOP/image"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(
            r["name"],
            str(r["embed_dim"]),
            str(r["depth"]),
            str(r["num_heads"]),
            str(r["patch_size"]),
            f"{r['params'] / 1e6:.2f}M",
            f"{r['gflops']:.3f}",
        )
    console.print(table)


def layer_summary(model: torch.nn.Module, image_size: int, in_chans: int) -> list[dict[str, Any]]:
    """One row per top-level part and per block: name, type, output shape, parameters."""
    import torch

    parts: list[tuple[str, torch.nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList):
            parts += [(f"{name}.{i}", m) for i, m in enumerate(child)]
        else:
            parts.append((name, child))
    shapes: dict[str, list[int]] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: shapes.__setitem__(n, list(out.shape)))
        for n, m in parts
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_chans, image_size, image_size))
    for h in hooks:
        h.remove()
    rows = [
        {
            "name": n,
            "type": type(m).__name__,
            "output": shapes.get(n),
            "params": sum(p.numel() for p in m.parameters()),
        }
        for n, m in parts
    ]
    direct = [(n, p) for n, p in model.named_parameters(recurse=False)]
    rows[1:1] = [
        {"name": n, "type": "Parameter", "output": list(p.shape), "params": p.numel()}
        for n, p in direct
    ]
    return rows


@app.command("show")
@user_errors
def show(
    name: Annotated[str, typer.Argument(help="Model name, as in `vitkit models list`.")],
    image_size: ImageSize = None,
    patch_size: PatchSize = None,
    in_chans: InChans = None,
    num_classes: NumClasses = None,
    num_outputs: NumOutputs = None,
    embed_dim: EmbedDim = None,
    depth: Depth = None,
    heads: Heads = None,
    mlp_ratio: MlpRatio = None,
    dropout: Dropout = None,
    drop_path: DropPath = None,
    pool: Pool = None,
    json_: Json = False,
) -> None:
    """The resolved config of one model, its parameters, FLOPs and a per-layer summary."""
    from vitkit.models import model_label, preset_overrides, resolve_spec

    spec = resolve_spec(
        name,
        **model_overrides(
            image_size=image_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            num_outputs=num_outputs,
            embed_dim=embed_dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            drop_path=drop_path,
            pool=pool,
        ),
    )
    model = spec.build()
    c = spec.config
    layers = layer_summary(model, c.image_size, c.in_chans)
    info = {
        "name": name,
        **spec.to_dict(),
        "overrides": preset_overrides(name, c),  # what it changes of the preset, at these sizes
        "params": c.num_params(),
        "flops": c.flops(),
        "gflops": round(c.flops() / 1e9, 4),
        "tokens": c.num_tokens,
        "layers": layers,
    }
    if json_:
        emit_json(info)
        return
    label = model_label(name, c)  # vit-tiny (embed_dim 96, depth 4): what is not the preset's
    cfg = Table(title=escape(label), show_header=False, min_width=len(label))  # on one line
    cfg.add_column("option", style="cyan")
    cfg.add_column("value", justify="right")
    for k, v in spec.to_dict()["config"].items():
        cfg.add_row(k, str(v))
    cfg.add_row("tokens", str(c.num_tokens))
    cfg.add_row("params", f"{c.num_params():,}")
    cfg.add_row("GFLOP/image", f"{c.flops() / 1e9:.4f}")
    console.print(cfg)
    t = Table(title="layers")
    for col in ("name", "type", "output", "params"):
        t.add_column(col, justify="right" if col == "params" else "left")
    for r in layers:
        t.add_row(r["name"], r["type"], str(tuple(r["output"] or ())), f"{r['params']:,}")
    console.print(t)
    if c.pool == "cls":
        console.print(
            f"[dim]blocks.{c.depth - 1} computes the class token alone: nothing reads the other"
            f" tokens after it (forward_features still returns all {c.num_tokens})[/dim]"
        )
