"""Target profiles: TOML data under ``targets/`` that say what to produce for a device and what to demand.

Code never branches on a profile's name; everything a target changes is a field here. The parsed
profile travels inside every bundle's manifest so the device can gate without the original file.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_bert.errors import ProfileError
from edge_bert.recipes import FORMATS, RecipeKind, RecipeOptions
from edge_bert.schema import CHECK, SchemaError, at_least, between, each, parse

#: keys a profile's top level may hold
_TOP_KEYS = ("name", "description", "arch", "isa", "formats", "detect", "shapes", "bench", "gates", *FORMATS)

_COSINE = {CHECK: between(-1.0, 1.0)}
_SHARE = {CHECK: between(0.0, 1.0)}


@dataclass(frozen=True)
class Gates:
    """Gates between a bundle's outputs and the fp32 PyTorch reference. Which of them decide depends on
    the task and on whether labelled data is there (tasks.py); the others are still measured and reported.

    ``min_cosine`` is on the mean per-sample cosine, ``min_worst_cosine`` on the worst sample,
    ``max_rel_error`` on the worst per-sample relative L2 error ||y - ref|| / ||ref|| (with the set's
    median ||ref|| as the floor of the denominator, see metrics.parity).
    ``min_top1_agreement`` (classification) counts only golden texts whose fp32 top-1 probability leads
    the runner-up by ``top1_margin``: a near-tie flips on any int8 rounding, and each ISA rounds
    differently, so a flip there says nothing about the bundle.

    On labelled evaluation data (``--eval-data``/``--data``): ``min_accuracy_pct_of_fp32`` is the
    bundle's accuracy (k-NN accuracy for embeddings) as % of the fp32 model's on the same texts -
    99 is the MLPerf edge rule for BERT; ``min_prediction_agreement`` is the share of texts whose
    predicted class equals fp32's; ``min_neighbour_recall`` the share whose nearest other text under
    fp32 (by embedding cosine) is among the bundle's 5 nearest, ``min_neighbour_agreement`` the share
    whose nearest other text is the same as under fp32 (top-1). Both neighbour gates decide on the labelled
    data; among the golden texts (embedding models get a dense built-in set, data/neighbours.txt) they are
    measured and reported only (too few texts to refuse a bundle on, tasks.Task.deciding_gates). A
    classifier with labelled data is judged on those; its per-sample probability cosine then only has to stay above
    ``min_collapse_cosine`` (dominated by near-ties among many classes, it says little about the task).
    """

    min_top1_agreement: float = field(default=0.99, metadata=_SHARE)
    min_cosine: float = field(default=0.99, metadata=_COSINE)
    min_worst_cosine: float = field(default=0.97, metadata=_COSINE)
    max_rel_error: float = field(default=0.25, metadata={CHECK: at_least(0.0)})
    min_accuracy_pct_of_fp32: float = field(default=99.0, metadata={CHECK: at_least(0.0)})
    min_prediction_agreement: float = field(default=0.97, metadata=_SHARE)
    min_neighbour_recall: float = field(default=0.95, metadata=_SHARE)
    min_neighbour_agreement: float = field(default=0.95, metadata=_SHARE)
    top1_margin: float = field(default=0.05, metadata=_SHARE)
    min_collapse_cosine: float = field(default=0.5, metadata=_COSINE)

    def merged(self, override: dict[str, Any] | None, where: str = "gates") -> Gates:
        if not override:
            return self
        try:
            return parse(Gates, {**asdict(self), **override}, where)
        except SchemaError as exc:
            raise ProfileError(str(exc)) from exc


@dataclass(frozen=True)
class Recipe:
    """One way to produce a model file: a kind the exporter implements plus its typed options."""

    name: str
    #: the kind's descriptor (recipes.KINDS): its format, options class, producer, precision
    descriptor: RecipeKind
    options: RecipeOptions
    gates: Gates

    @property
    def kind(self) -> str:
        return self.descriptor.name

    @property
    def required(self) -> bool:
        return self.options.required


@dataclass(frozen=True)
class FormatSpec:
    name: str
    recipes: tuple[Recipe, ...]
    #: the format's options (recipes.OnnxOptions, recipes.TfliteOptions)
    options: Any

    @property
    def default_recipe(self) -> Recipe:
        return self.recipes[0]

    def recipe(self, name: str) -> Recipe:
        for recipe in self.recipes:
            if recipe.name == name:
                return recipe
        raise ProfileError(
            f"recipe {name!r} is not in this profile's {self.name} recipes: {[r.name for r in self.recipes]}"
        )


@dataclass(frozen=True)
class Shapes:
    """``dynamic``: any batch/sequence up to max_length; ``static``: the runner pads to seq_lengths."""

    policy: Literal["dynamic", "static"] = "dynamic"
    max_length: int = field(default=128, metadata={CHECK: between(2, 8192)})
    seq_lengths: tuple[int, ...] = field(default=(), metadata={CHECK: each(between(2, 8192))})


@dataclass(frozen=True)
class BenchSettings:
    threads: int = field(default=2, metadata={CHECK: at_least(1)})
    warmup: int = field(default=10, metadata={CHECK: at_least(0)})
    runs: int = field(default=50, metadata={CHECK: at_least(1)})
    seq_lengths: tuple[int, ...] = field(default=(16, 64, 128), metadata={CHECK: each(between(2, 8192))})


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    arch: str
    isa: tuple[str, ...]
    shapes: Shapes
    bench: BenchSettings
    gates: Gates
    formats: dict[str, FormatSpec]
    raw: dict[str, Any] = field(repr=False, compare=False)
    source: str = ""
    #: false for device-only profiles (a phone): ``--target auto`` never picks them
    detect: bool = True


def builtin_targets_dir() -> Path:
    """Profiles ship inside the wheel as ``edge_bert/targets``; a source checkout keeps them at the top."""
    packaged = Path(__file__).resolve().parent / "targets"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "targets"


def list_profiles() -> list[TargetProfile]:
    return [load_profile(p) for p in sorted(builtin_targets_dir().glob("*.toml"))]


def detect_profile(machine: str, isa_flags: list[str]) -> TargetProfile:
    """The built-in profile for this machine: same arch, all its ISA flags present, the most specific wins.

    Driven by each profile's ``arch``/``isa`` data (and ``detect = false`` for device-only profiles).
    """
    candidates = [p for p in list_profiles() if p.detect and p.arch == machine and set(p.isa) <= set(isa_flags)]
    if not candidates:
        raise ProfileError(f"no built-in target matches this {machine} CPU; pass --target NAME or a .toml file")
    return max(candidates, key=lambda p: len(p.isa))


def load_profile(name_or_path: str | Path) -> TargetProfile:
    """Load a built-in profile by name (``x86``), ``auto`` for this machine's, or a TOML file by path."""
    if str(name_or_path) == "auto":
        from edge_bert.fingerprint import fingerprint

        machine = fingerprint()
        return detect_profile(str(machine["machine"]), list(machine["isa_flags"]))
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.exists()):
        path = builtin_targets_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            names = sorted(p.stem for p in builtin_targets_dir().glob("*.toml"))
            raise ProfileError(
                f"unknown target {str(name_or_path)!r}; built-in targets: {', '.join(names)} "
                "(or pass the path of your own .toml profile)"
            )
    if not path.is_file():
        raise ProfileError(f"target profile file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
        raise ProfileError(f"{path}: not valid TOML: {str(exc)[:200]}") from exc
    return profile_from_dict(raw, source=str(path))


def profile_from_dict(raw: dict[str, Any], source: str = "<dict>") -> TargetProfile:
    """Parse and check a profile strictly (an unknown key anywhere is an error naming it); also used to
    rebuild the profile stored in a bundle's manifest."""
    try:
        if not isinstance(raw, dict):
            raise SchemaError("", "a profile is a TOML table")
        unknown = sorted(set(raw) - set(_TOP_KEYS))
        if unknown:
            raise SchemaError(unknown[0], f"unknown key; a profile holds {', '.join(_TOP_KEYS)}")
        for key in ("name", "formats"):
            if key not in raw:
                raise SchemaError(key, "missing (required)")
        name = parse(str, raw["name"], "name")
        formats_raw = parse(list[str], raw["formats"], "formats")
        unknown = [f for f in formats_raw if f not in FORMATS]
        if unknown:
            raise SchemaError("formats", f"unknown format(s) {unknown}; known: {list(FORMATS)}")
        if not formats_raw:
            raise SchemaError("formats", "names no format")
        arch = parse(str, raw.get("arch", ""), "arch")
        for fmt in formats_raw:
            if reason := FORMATS[fmt].unavailable.get(arch):
                raise SchemaError("formats", f"{fmt} is not offered on {arch}: {reason}")
        gates = Gates().merged(raw.get("gates"))
        formats = {fmt: _format_spec(fmt, raw.get(fmt, {}), gates) for fmt in formats_raw}
        shapes = parse(Shapes, raw.get("shapes", {}), "shapes")
        if shapes.policy == "static" and not shapes.seq_lengths:
            raise SchemaError("shapes.seq_lengths", "a static shape policy needs them, e.g. [32, 64, 128]")
        return TargetProfile(
            name=name,
            description=parse(str, raw.get("description", ""), "description"),
            arch=arch,
            isa=tuple(parse(list[str], raw.get("isa", []), "isa")),
            shapes=shapes,
            bench=parse(BenchSettings, raw.get("bench", {}), "bench"),
            gates=gates,
            formats=formats,
            raw=raw,
            source=source,
            detect=parse(bool, raw.get("detect", True), "detect"),
        )
    except (SchemaError, ProfileError) as exc:
        raise ProfileError(f"{source}: {exc}") from exc


def _format_spec(name: str, section: Any, gates: Gates) -> FormatSpec:
    descriptor = FORMATS[name]
    if not isinstance(section, dict):
        raise SchemaError(name, "expected a table")
    section = dict(section)
    order = parse(list[str], section.pop("recipes", []), f"{name}.recipes")
    if not order:
        raise SchemaError(f"{name}.recipes", "missing: a list of recipes is needed (the first is the default)")
    tables = parse(dict[str, Any], section.pop("recipe", {}), f"{name}.recipe")
    stray = sorted(set(tables) - set(order))
    if stray:
        raise SchemaError(f"{name}.recipe.{stray[0]}", f"this recipe is not in {name}.recipes {order}")
    recipes = []
    for recipe_name in order:
        where = f"{name}.recipe.{recipe_name}"
        options = dict(parse(dict[str, Any], tables.get(recipe_name, {}), where))
        kind = parse(str, options.pop("kind", recipe_name), f"{where}.kind")
        if kind not in descriptor.recipes:
            raise SchemaError(f"{where}.kind", f"unknown kind {kind!r} for {name}; known: {list(descriptor.recipes)}")
        recipe_gates = gates.merged(options.pop("gates", None), f"{where}.gates")
        recipe_kind = descriptor.recipes[kind]
        recipes.append(Recipe(recipe_name, recipe_kind, parse(recipe_kind.options, options, where), recipe_gates))
    return FormatSpec(name, tuple(recipes), parse(descriptor.options, section, name))
