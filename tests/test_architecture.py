"""docs/architecture.md, enforced: the package's own imports (every `import`/`from ... import`, function-local
ones too, and `importlib.import_module` calls) go down the layers only, and no module imports itself back."""
import ast
import collections
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "r2rank_jax"

# Lowest first. A package may import its own group and the groups below; never a group above.
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"mesh", "distributed", "buckets", "progress"}),
    ("models", {"models"}),
    ("primitives", {"ranking", "sampling", "data"}),
    ("training", {"train", "eval", "teacher", "baselines"}),
    ("config", {"config"}),
    ("run", {"run"}),
    ("stages", {"stages", "methods"}),
    ("apps", {"launch", "ablations", "findings", "runner", "analyses", "serve", "tools", "bench", "generate", "study", "study_archive",
              "report"}),
]
# Same group, but independent: the launcher combines the shared stages with the methods.
MUST_NOT_IMPORT = {("stages", "methods"), ("methods", "stages")}
# Dynamic imports whose target is computed: the package they stay inside.
DYNAMIC_WITHIN = {"r2rank_jax.methods.registry": "methods"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(name: str, modules) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports}; an unresolvable dynamic import is recorded as '<dynamic>'."""
    modules = _modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant):
                    targets = [arg.value]
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    targets = [arg.values[0].value.rstrip(".")]
                elif mod in DYNAMIC_WITHIN:
                    targets = [f"r2rank_jax.{DYNAMIC_WITHIN[mod]}"]
                else:
                    graph[mod].add("<dynamic>")
            for t in targets:
                if t.startswith("r2rank_jax"):
                    resolved = _resolve(t, modules)
                    if resolved and resolved != mod:
                        graph[mod].add(resolved)
    return graph


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    rank = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}
    out = []
    for mod, targets in sorted(graph.items()):
        src = top(mod)
        if src == "<root>":
            continue
        if src not in rank:
            out.append(f"{mod}: package {src!r} is in no layer of docs/architecture.md")
            continue
        for t in sorted(targets):
            if t == "<dynamic>":
                out.append(f"{mod}: an import_module call whose target cannot be read")
                continue
            dst = top(t)
            if dst == "<root>" or dst == src:
                continue
            if dst not in rank:
                out.append(f"{mod} imports {t}: package {dst!r} is in no layer")
            elif rank[dst] > rank[src] or (src, dst) in MUST_NOT_IMPORT:
                out.append(f"{mod} ({LAYERS[rank[src]][0]}) imports {t} ({LAYERS[rank[dst]][0]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), of modules or of `key(module)`."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for mod, targets in graph.items():
        for t in targets:
            if t != "<dynamic>" and top(t) != top(mod):
                out[top(mod)].add(top(t))
    return out


def test_every_import_goes_down_the_layers():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles_between_modules_or_packages():
    graph = {m: {t for t in ts if t != "<dynamic>"} for m, ts in import_graph().items()}
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = import_graph()
    bad = {**graph, "r2rank_jax.models.decoder": graph["r2rank_jax.models.decoder"] | {"r2rank_jax.run.builders"}}
    assert layer_violations(bad) == ["r2rank_jax.models.decoder (models) imports r2rank_jax.run.builders (run)"]
    assert any("r2rank_jax.models.decoder" in c for c in cycles(bad))   # run imports models: a cycle too
    sideways = {**graph, "r2rank_jax.stages.evaluate": graph["r2rank_jax.stages.evaluate"] | {"r2rank_jax.methods.registry"}}
    assert layer_violations(sideways) == ["r2rank_jax.stages.evaluate (stages) imports r2rank_jax.methods.registry (stages)"]
    unplaced = {**graph, "r2rank_jax.newpkg.thing": {"r2rank_jax.models.decoder"}}
    assert layer_violations(unplaced) == ["r2rank_jax.newpkg.thing: package 'newpkg' is in no layer of docs/architecture.md"]


@pytest.mark.parametrize("group", [name for name, _ in LAYERS])
def test_docs_architecture_names_every_layer(group):
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert f"**{group}**" in text
    for pkg in dict(LAYERS)[group]:
        if (PACKAGE / pkg).exists() or (PACKAGE / f"{pkg}.py").exists():
            assert f"`{pkg}`" in text, pkg
