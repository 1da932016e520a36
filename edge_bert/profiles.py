"""Target profiles: TOML data under ``targets/`` that say what to produce for a device and what to demand.

Code never branches on a profile's name; everything a target changes is a field here. The parsed
profile travels inside every bundle's manifest so the device can gate without the original file.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_bert.errors import ProfileError

#: Formats a profile may name. Whether this build can *produce* one is the converter's business.
KNOWN_FORMATS = ("onnx", "tflite")
#: Recipe kinds per format: what a ``[FORMAT.recipe.NAME]`` table may be (``kind`` defaults to NAME).
RECIPE_KINDS = {
    "onnx": ("fp32", "dynamic-int8", "static-int8", "fp16"),
    "tflite": ("fp32", "fp16", "dynamic-int8", "weight-only-int8", "full-int8"),
}


@dataclass(frozen=True)
class Gates:
    """Parity gates between a bundle's outputs and the fp32 PyTorch reference.

    ``min_cosine`` is on the mean per-sample cosine, ``min_worst_cosine`` on the worst sample,
    ``max_rel_error`` on the worst per-sample relative L2 error ||y - ref|| / ||ref|| (with the set's
    median ||ref|| as the floor of the denominator, see metrics.parity).
    ``min_top1_agreement`` applies to classification only.

    On labelled evaluation data (``--eval-data``/``--data``): ``min_accuracy_pct_of_fp32`` is the
    bundle's accuracy (k-NN accuracy for embeddings) as % of the fp32 model's on the same texts -
    99 is the MLPerf edge rule for BERT; ``min_prediction_agreement`` is the share of texts whose
    predicted class equals fp32's; ``min_neighbour_recall`` the share whose nearest other text under
    fp32 (by embedding cosine) is among the bundle's 5 nearest.
    """

    min_top1_agreement: float = 0.99
    min_cosine: float = 0.99
    min_worst_cosine: float = 0.97
    max_rel_error: float = 0.25
    min_accuracy_pct_of_fp32: float = 99.0
    min_prediction_agreement: float = 0.97
    min_neighbour_recall: float = 0.95

    def merged(self, override: dict[str, Any] | None) -> Gates:
        if not override:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(override) - known
        if unknown:
            raise ProfileError(f"unknown gate(s) {sorted(unknown)}; known gates: {sorted(known)}")
        return Gates(**{**asdict(self), **{k: float(v) for k, v in override.items()}})


@dataclass(frozen=True)
class Recipe:
    """One way to produce a model file: a kind the exporter implements plus its options."""

    name: str
    kind: str
    options: dict[str, Any]
    gates: Gates


@dataclass(frozen=True)
class FormatSpec:
    name: str
    recipes: tuple[Recipe, ...]
    options: dict[str, Any]

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

    policy: str = "dynamic"
    max_length: int = 128
    seq_lengths: tuple[int, ...] = ()


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 2
    warmup: int = 10
    runs: int = 50
    seq_lengths: tuple[int, ...] = (16, 64, 128)


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
    candidates = [
        p for p in list_profiles() if p.raw.get("detect", True) and p.arch == machine and set(p.isa) <= set(isa_flags)
    ]
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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    return profile_from_dict(raw, source=str(path))


def profile_from_dict(raw: dict[str, Any], source: str = "<dict>") -> TargetProfile:
    """Parse and check a profile; also used to rebuild the profile stored in a bundle's manifest."""
    try:
        gates = Gates().merged(raw.get("gates"))
        formats_raw = raw["formats"]
        unknown = [f for f in formats_raw if f not in KNOWN_FORMATS]
        if unknown:
            raise ProfileError(f"{source}: unknown format(s) {unknown}; known: {list(KNOWN_FORMATS)}")
        formats = {name: _format_spec(name, raw.get(name, {}), gates, source) for name in formats_raw}
        shapes_raw = raw.get("shapes", {})
        shapes = Shapes(
            policy=shapes_raw.get("policy", "dynamic"),
            max_length=int(shapes_raw.get("max_length", 128)),
            seq_lengths=tuple(int(n) for n in shapes_raw.get("seq_lengths", ())),
        )
        if shapes.policy not in ("dynamic", "static"):
            raise ProfileError(f"{source}: shapes.policy must be 'dynamic' or 'static', not {shapes.policy!r}")
        if shapes.policy == "static" and not shapes.seq_lengths:
            raise ProfileError(f"{source}: a static shape policy needs shapes.seq_lengths, e.g. [32, 64, 128]")
        bench_raw = raw.get("bench", {})
        bench = BenchSettings(
            threads=int(bench_raw.get("threads", 2)),
            warmup=int(bench_raw.get("warmup", 10)),
            runs=int(bench_raw.get("runs", 50)),
            seq_lengths=tuple(int(n) for n in bench_raw.get("seq_lengths", (16, 64, 128))),
        )
        return TargetProfile(
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            arch=str(raw.get("arch", "")),
            isa=tuple(raw.get("isa", ())),
            shapes=shapes,
            bench=bench,
            gates=gates,
            formats=formats,
            raw=raw,
            source=source,
        )
    except KeyError as exc:
        raise ProfileError(f"{source}: missing required key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{source}: malformed profile: {exc}") from exc


def _format_spec(name: str, section: dict[str, Any], gates: Gates, source: str) -> FormatSpec:
    order = section.get("recipes")
    if not order:
        raise ProfileError(f"{source}: [{name}] needs a 'recipes' list (the first is the default)")
    tables = section.get("recipe", {})
    recipes = []
    for recipe_name in order:
        options = dict(tables.get(recipe_name, {}))
        kind = options.pop("kind", recipe_name)
        if kind not in RECIPE_KINDS[name]:
            raise ProfileError(
                f"{source}: recipe {recipe_name!r} has unknown kind {kind!r} for {name}; "
                f"known kinds: {list(RECIPE_KINDS[name])}"
            )
        recipe_gates = gates.merged(options.pop("gates", None))
        recipes.append(Recipe(recipe_name, kind, options, recipe_gates))
    options = {k: v for k, v in section.items() if k not in ("recipes", "recipe")}
    return FormatSpec(name, tuple(recipes), options)
