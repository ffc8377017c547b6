"""Every metric the project shows, once: its label, unit, digits, which way is better, and
where it is shown. The README's table (`make results`), the registry's gate (`make promote`),
a sweep's headline (`make sweep`), the claims' tables and figures, and `make compare` read
their metrics from here; adding a metric is its computation (evaluation.py) and one entry.

A metric's key is the part after `<model>.test.` in reports/metrics.json (`generation.kid`);
the evaluation runs log it as `test.<key>`. A metric that is computed from others (`derive`)
is added to each point's metrics where the claims read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MODELS = ("ae", "vae")
# Where a metric can be shown
TABLE, GATE, HEADLINE = "table", "gate", "headline"


@dataclass(frozen=True)
class Metric:
    key: str  # under <model>.test.
    label: str
    digits: int  # decimals in tables
    better: str | None  # "lower", "higher", or None: a description, not a quality
    unit: str = ""
    shown: frozenset[str] = frozenset()  # of TABLE, GATE
    headline: tuple[str, ...] = ()  # the models a sweep's summary shows it for
    claim: str | None = None  # the claim (CLAIMS' name) whose table and figure show it
    models: tuple[str, ...] = MODELS  # the models that have it
    log: bool = False  # spans orders of magnitude: compared (and drawn) as ratios
    short: str = ""  # a name for one-line readings; the label's when empty
    derive: Callable[[Mapping[str, float]], float | None] | None = field(
        default=None, compare=False
    )  # from <model>.test.* values (by key), for a metric not in metrics.json

    @property
    def name(self) -> str:
        return self.short or self.label

    def title(self) -> str:
        """The label with its unit and its direction, for a figure's axis or a table's row."""
        unit = f", {self.unit}" if self.unit else ""
        better = f"; {self.better} is better" if self.better else ""
        return f"{self.label}{unit}{better}"

    def format(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.{self.digits}f}"

    def dotted(self, model: str) -> str:
        """The key in reports/metrics.json."""
        return f"{model}.test.{self.key}"


@dataclass(frozen=True)
class Claim:
    name: str  # its figure's file stem
    title: str
    says: str  # the claim, as the lecture makes it, of the VAE against the AE
    expect: str  # the VAE's verdict against the AE where the claim holds: "better" | "worse"
    axis: str | None = None  # the axis its figure is drawn against, when the sweep has it
    trend: bool = False  # it also says its metrics get better along that axis


def _unlike(values: Mapping[str, float]) -> float | None:
    precision = values.get("generation.precision")
    return None if precision is None else 1.0 - precision


T = frozenset({TABLE})
CATALOGUE: tuple[Metric, ...] = (
    Metric("bce", "reconstruction BCE (test, mean per pixel)", 4, "lower",
           shown=frozenset({TABLE, GATE}), headline=MODELS, claim="reconstruction", short="BCE"),
    Metric("mse", "reconstruction MSE (test)", 4, "lower", shown=T),
    Metric("bce_sampled", "reconstruction BCE from sampled z (test)", 4, "lower", shown=T,
           models=("vae",)),
    Metric("kl", "KL term (test, mean per image)", 2, None, "nats", shown=T, models=("vae",)),
    Metric("loss", "training objective: beta x BCE (sampled z) + KL (test)", 2, "lower",
           shown=T, models=("vae",)),
    Metric("latent.kl_from_standard_normal",
           "KL of a Gaussian fitted to the embeddings from N(0, I)", 2, "lower", "nats",
           shown=T, headline=("vae",), claim="vae_prior", log=True, short="KL from N(0, I)"),
    Metric("frechet_distance_reconstructions", "Frechet distance: test reconstructions", 1,
           "lower", shown=T),
    Metric("generation.frechet_distance", "Frechet distance: generated images", 1, "lower",
           shown=T, headline=MODELS, claim="generation", short="Frechet distance"),
    Metric("generation.mean_confidence", "classifier's mean confidence on generated images",
           3, "higher", shown=T),
    Metric("generation.class_entropy_bits", "entropy of generated classes (even split 3.32)",
           2, "higher", "bits", shown=T),
    Metric("bce_gain", "share of the BCE gap, mean image to perfect, closed", 3, "higher",
           shown=T, claim="reconstruction", short="gap closed"),
    Metric("generation.precision", "generated images: precision (like some test image)", 3,
           "higher", shown=T),
    Metric("generation.recall", "generated images: recall (test images they resemble)", 3,
           "higher", shown=T, claim="vae_prior", short="recall"),
    Metric("generation.density", "generated images: density (1: spread like test images)", 3,
           None, shown=T),
    Metric("generation.coverage", "generated images: coverage (test images' balls reached)", 3,
           "higher", shown=frozenset({TABLE, GATE}), headline=("vae",), claim="vae_prior",
           short="coverage"),
    Metric("generation.kid", "generated images: KID", 3, "lower",
           shown=frozenset({TABLE, GATE}), claim="generation", short="KID"),
    Metric("generation.kid_std", "generated images: KID's spread over subsets", 3, None,
           shown=T),
    Metric("generation.latent_far_share",
           "latent samples outside every test embedding's 5-NN ball", 3, "lower", shown=T,
           claim="ae_gaps", short="far draws"),
    Metric("generation.unlike_share", "samples unlike every test image (1 - precision)", 3,
           "lower", claim="ae_gaps", derive=_unlike, short="unlike samples"),
    Metric("generation.top_class_share", "the top class's share of the samples (even: 0.1)",
           3, "lower", claim="vae_prior", short="top-class share"),
    Metric("reconstructions.precision", "test reconstructions: precision", 3, "higher",
           shown=T),
    Metric("reconstructions.recall", "test reconstructions: recall", 3, "higher", shown=T),
)  # fmt: skip

CLAIMS: tuple[Claim, ...] = (
    Claim("reconstruction", "Claim 1: reconstruction",
          "the AE reconstructs better than the VAE, and both better with a larger latent space",
          "worse", axis="vae.latent_dim", trend=True),
    Claim("ae_gaps", "Claim 2: the AE's gaps",
          "the AE's latent space has gaps, so its uniform draws decode to poor images more "
          "often than the VAE's draws from N(0, I)", "better", axis="vae.latent_dim"),
    Claim("vae_prior", "Claim 3: the VAE's prior",
          "the KL term keeps the VAE's codes near N(0, I), so its samples cover the data and "
          "favour no class", "better", axis="vae.beta"),
    Claim("generation", "Generation quality",
          "the VAE's samples are nearer the test images than the AE's", "better",
          axis="vae.beta"),
)  # fmt: skip


def shown(place: str) -> list[Metric]:
    """The metrics shown in `place` (TABLE or GATE), in the catalogue's order."""
    return [m for m in CATALOGUE if place in m.shown]


def headline() -> list[str]:
    """A sweep's summary columns: dotted keys of metrics.json."""
    return [m.dotted(model) for m in CATALOGUE for model in m.headline]


def of_claim(name: str) -> list[Metric]:
    return [m for m in CATALOGUE if m.claim == name]


def by_dotted() -> dict[str, Metric]:
    """{"<model>.test.<key>": metric} for every model that has it."""
    return {m.dotted(model): m for m in CATALOGUE for model in m.models}


def derived(metrics: Mapping[str, float]) -> dict[str, float]:
    """Flattened metrics with the derived metrics added, for each model that has them."""
    out = dict(metrics)
    for model in MODELS:
        prefix = f"{model}.test."
        values = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
        for metric in CATALOGUE:
            if metric.derive is not None and model in metric.models:
                value = metric.derive(values)
                if value is not None:
                    out[metric.dotted(model)] = value
    return out
