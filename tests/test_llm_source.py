"""The LLM tree source against a real HTTP server on 127.0.0.1, through the real openai client."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from llm_server import (
    LLMServer,
    Reply,
    _key,
    place_rule,
    rule_answer,
    rule_grouper,
    task_of,
)

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassRef, ClassSet, builtin_set, imagenet
from nhlcli.hierarchy.llm import BuildReport, LLMOptions, build_hybrid_tree, build_llm_tree
from nhlcli.hierarchy.llm.answer_text import AnswerNotJSON, parse_answer_json
from nhlcli.hierarchy.llm.builder import requested_group_counts
from nhlcli.hierarchy.llm.client import MAX_ANSWER_BYTES, hide_secret, scrub
from nhlcli.hierarchy.llm.labels import make_labels
from nhlcli.hierarchy.llm.repair import QUOTE_CHARS, REPAIR_PROBLEMS
from nhlcli.hierarchy.llm.strategy import apportion, share_counts
from nhlcli.hierarchy.llm.validate import validate_grouping
from nhlcli.hierarchy.tree import Tree

SECRET = "sk-test-SECRET-0123456789abcdef"

NETTE = builtin_set("imagenette")
# a valid 1-level grouping of Imagenette (labels as the model sees them)
NETTE_GROUPS = {
    "animals": ["tench", "English springer"],
    "music and sound": ["cassette player", "French horn"],
    "tools and machines": ["chain saw", "garbage truck", "gas pump"],
    "places and things": ["church", "golf ball", "parachute"],
}


def answer(groups: dict[str, list[str]]) -> dict[str, Any]:
    return {"groups": [{"name": k, "classes": v} for k, v in groups.items()]}


def with_change(**changes: list[str]) -> dict[str, Any]:
    return answer({**NETTE_GROUPS, **changes})


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("NHL_CACHE_DIR", str(tmp_path / "default-cache"))


def options(server: LLMServer, tmp_path: Path, **kw: Any) -> LLMOptions:
    base: dict[str, Any] = {
        "model": "test-model",
        "base_url": server.url,
        "cache_dir": tmp_path / "cache",
        "timeout": 5.0,
        "max_retries": 2,
        "retry_backoff": 0.001,
        "max_repairs": 2,
    }
    return LLMOptions(**{**base, **kw})


def build(
    server: LLMServer,
    tmp_path: Path,
    classes: ClassSet = NETTE,
    levels: int = 2,
    groups: list[int] | None = None,
    report: BuildReport | None = None,
    **kw: Any,
) -> Tree:
    return build_llm_tree(classes, levels, groups, options(server, tmp_path, **kw), report=report)


def parent_names(tree: Tree) -> dict[str, str]:
    return {c.name: tree.node(c.parent).name for c in tree.classes if c.parent}


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def last_user_message(body: dict[str, Any]) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


# ------------------------------------------------------------------ a valid answer
def test_valid_grouping_builds_the_tree_and_records_provenance(tmp_path: Path) -> None:
    with LLMServer([Reply.json(answer(NETTE_GROUPS))]) as server:
        report = BuildReport()
        tree = build(server, tmp_path, report=report)
    assert tree.levels == 2
    assert tree.class_ids == NETTE.wnids  # logit order = class set order
    expected = {lab: g for g, labs in NETTE_GROUPS.items() for lab in labs}
    assert parent_names(tree) == expected
    assert [tree.node(n).name for n in tree.level(1)] == list(NETTE_GROUPS)
    llm = tree.provenance["llm"]
    assert llm["model"] == "test-model" and llm["server"] == server.url
    assert llm["prompt_version"] == "nhl-llm/1" and len(llm["exchange_sha256"]) == 64
    assert tree.provenance["source"] == "llm"
    assert report.requests == 1 and report.steps == 1 and report.format_mode == "json_schema"
    body = server.requests[0]
    assert body["model"] == "test-model" and body["temperature"] == 0 and "seed" in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    leaf_items = fmt["json_schema"]["schema"]["properties"]["groups"]["items"]
    assert sorted(leaf_items["properties"]["classes"]["items"]["enum"]) == sorted(
        c.name for c in NETTE.classes
    )
    assert server.auth_headers == [f"Bearer {SECRET}"]


def test_rule_server_builds_three_levels_matching_the_rule(tmp_path: Path) -> None:
    with LLMServer(fallback=rule_grouper) as server:
        tree = build(server, tmp_path, levels=3)
    assert tree.levels == 3
    for c in tree.classes:
        names = [tree.node(n).name for n in tree.path(c.id)[:-1]]
        assert names == [_key(c.name, 1), _key(c.name, 2)]
    assert len(server.requests) == 1


# ------------------------------------------------------------------ invalid answers and repair
@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (Reply.text('{"groups": [{"name": "a", "classes": ["tench",]}'), "not valid JSON"),
        (Reply.json(with_change(animals=["tench"])), "1 class is missing: 'English springer'"),
        (
            Reply.json(with_change(animals=["tench", "English springer", "church"])),
            "'church' appears 2 times (in 'animals', 'places and things')",
        ),
        (
            Reply.json(with_change(animals=["tench", "English springer", "flying car"])),
            "in group 'animals': 'flying car' is not one of the given classes",
        ),
        (Reply.json(with_change(empty=[])), "group 'empty' (level 1) is empty"),
    ],
    ids=["invalid-json", "class-missing", "class-twice", "invented-class", "empty-group"],
)
def test_invalid_answer_is_repaired(tmp_path: Path, bad: Reply, problem: str) -> None:
    with LLMServer([bad, Reply.json(answer(NETTE_GROUPS))]) as server:
        report = BuildReport()
        tree = build(server, tmp_path, report=report)
    assert parent_names(tree)["English springer"] == "animals"
    assert len(server.requests) == 2 and report.repairs == 1
    repair = server.requests[1]
    assert problem in last_user_message(repair)
    # the repair conversation carries the bad answer as the assistant turn
    assert repair["messages"][-2] == {"role": "assistant", "content": bad.content}


def test_repair_loop_that_does_not_converge_fails_with_every_problem(tmp_path: Path) -> None:
    bad = with_change(animals=["tench", "flying car"])
    with LLMServer([Reply.json(bad)] * 3) as server, pytest.raises(NhlError) as err:
        build(server, tmp_path, max_repairs=2)
    msg = str(err.value)
    assert len(server.requests) == 3  # the question and two repairs
    assert "still invalid after 2 repair(s)" in msg and server.url in msg
    assert "'flying car' is not one of the given classes" in msg
    assert "1 class is missing: 'English springer'" in msg
    assert "\n" not in msg
    assert not (tmp_path / "cache").exists()  # nothing cached on failure


def test_wrong_number_of_levels_and_groups_are_problems(tmp_path: Path) -> None:
    flat = answer(NETTE_GROUPS)  # one level of groups where two are required
    nested = {"groups": [{"name": "all", "groups": flat["groups"]}]}  # 1 top group, 3 wanted
    fixed = {
        "groups": [
            {"name": "living", "groups": flat["groups"][:1]},
            {"name": "sound", "groups": flat["groups"][1:2]},
            {"name": "other", "groups": flat["groups"][2:]},
        ]
    }
    with LLMServer([Reply.json(flat), Reply.json(nested), Reply.json(fixed)]) as server:
        tree = build(server, tmp_path, levels=3, groups=[3, 4])
    assert [len(tree.level(i)) for i in (1, 2, 3)] == [3, 4, 10]
    first, second = (last_user_message(server.requests[i]) for i in (1, 2))
    assert "group 'animals' (level 1) lists classes directly, but 2 levels" in first
    assert "level 1 has 1 groups but exactly 3 are required" in second


def test_group_names_must_be_unique_per_level() -> None:
    labels = make_labels(NETTE.classes)
    data = {
        "groups": [
            {
                "name": "A",
                "groups": [{"name": "x", "classes": [c.name for c in NETTE.classes[:5]]}],
            },
            {
                "name": "B",
                "groups": [{"name": "X", "classes": [c.name for c in NETTE.classes[5:]]}],
            },
        ]
    }
    _, problems = validate_grouping(data, labels, depth=2)
    assert problems == [
        "the group name 'x' is used 2 times at level 2; group names must be unique per level"
    ]


def test_cut_off_answer_fails_at_once(tmp_path: Path) -> None:
    with (
        LLMServer([Reply.text('{"groups": [', finish_reason="length")]) as server,
        pytest.raises(NhlError, match="cut off at its output limit"),
    ):
        build(server, tmp_path)
    assert len(server.requests) == 1


# ------------------------------------------------------------------ faults and retries
def test_rate_limit_then_success(tmp_path: Path) -> None:
    script = [
        Reply.fail(429, "slow down", headers={"retry-after-ms": "5"}),
        Reply.json(answer(NETTE_GROUPS)),
    ]
    with LLMServer(script) as server:
        report = BuildReport()
        build(server, tmp_path, report=report)
    assert len(server.requests) == 2 and report.requests == 2


def test_server_error_then_success_and_persistent_error(tmp_path: Path) -> None:
    with LLMServer([Reply.fail(500), Reply.json(answer(NETTE_GROUPS))]) as server:
        build(server, tmp_path)
    assert len(server.requests) == 2
    with (
        LLMServer([Reply.fail(503, "overloaded")] * 3) as server,
        pytest.raises(NhlError) as err,
    ):
        build(server, tmp_path, max_retries=2)
    assert len(server.requests) == 3
    assert str(err.value) == (
        f"the model server at {server.url} failed 3 time(s), last: HTTP 503: overloaded; "
        "try again later or raise --llm-timeout"
    )


def test_reply_slower_than_the_timeout_is_retried(tmp_path: Path) -> None:
    slow = Reply.json(answer(NETTE_GROUPS), delay=1.5)
    with LLMServer([slow, Reply.json(answer(NETTE_GROUPS))]) as server:
        tree = build(server, tmp_path, timeout=0.3)
    assert tree.levels == 2 and len(server.requests) == 2
    with (
        LLMServer([slow]) as server,
        pytest.raises(NhlError, match=r"failed 1 time\(s\), last: no complete answer within 0.3 s"),
    ):
        build(server, tmp_path, timeout=0.3, max_retries=0, use_cache=False)


def test_dropped_connection_is_retried(tmp_path: Path) -> None:
    with LLMServer([Reply(drop=True), Reply.json(answer(NETTE_GROUPS))]) as server:
        tree = build(server, tmp_path)
    assert tree.levels == 2 and len(server.requests) == 2


def closed_port_url() -> str:
    """A URL where nothing listens: a port just bound and released."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


def test_refused_connection_names_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    opts = LLMOptions(model="m", base_url=url, cache_dir=tmp_path, retry_backoff=0.001)
    with pytest.raises(NhlError) as err:
        build_llm_tree(NETTE, 2, None, opts)
    assert str(err.value) == (
        f"cannot connect to the model server at {url}: connection refused "
        "(is it running? check --base-url / OPENAI_BASE_URL)"
    )


def test_wrong_key_names_the_url_and_never_the_key(tmp_path: Path) -> None:
    with LLMServer(api_key="sk-the-right-one") as server, pytest.raises(NhlError) as err:
        build(server, tmp_path)
    msg = str(err.value)
    assert msg == (
        f"the model server at {server.url} rejected the API key from $OPENAI_API_KEY (HTTP 401)"
    )
    assert len(server.requests) == 0 and len(server.auth_headers) == 1  # 401 is not retried


def test_missing_key_and_other_key_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with LLMServer([Reply.json(answer(NETTE_GROUPS))]) as server:
        with pytest.raises(NhlError, match=r"the environment variable OPENAI_API_KEY is not set"):
            build(server, tmp_path)
        monkeypatch.setenv("MY_LLM_KEY", "sk-other")
        build(server, tmp_path, api_key_env="MY_LLM_KEY")
    assert server.auth_headers == ["Bearer sk-other"]


def test_unknown_model_404_is_one_line(tmp_path: Path) -> None:
    with (
        LLMServer([Reply.fail(404, "model 'nope' not found")]) as server,
        pytest.raises(NhlError) as err,
    ):
        build(server, tmp_path, model="nope")
    assert str(err.value) == (
        f"the model server at {server.url} answered 404 for model 'nope' (unknown model or wrong "
        "--base-url): model 'nope' not found"
    )


def test_base_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LLMServer([Reply.json(answer(NETTE_GROUPS))]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        tree = build_llm_tree(NETTE, 2, None, LLMOptions(model="m", cache_dir=tmp_path))
    assert tree.provenance["llm"]["server"] == server.url and len(server.requests) == 1


# ------------------------------------------------------------------ response formats
def test_json_mode_fallback_when_json_schema_is_rejected(tmp_path: Path) -> None:
    with LLMServer([Reply.json(answer(NETTE_GROUPS))], reject_formats=["json_schema"]) as server:
        report = BuildReport()
        build(server, tmp_path, report=report)
    assert [b.get("response_format", {}).get("type") for b in server.requests] == [
        "json_schema",
        "json_object",
    ]
    assert report.format_mode == "json_object"


def test_text_fallback_parses_a_fenced_block(tmp_path: Path) -> None:
    with LLMServer(fallback=rule_grouper, reject_formats=["json_schema", "json_object"]) as server:
        report = BuildReport()
        tree = build(server, tmp_path, report=report)
    assert report.format_mode == "text" and "response_format" not in server.requests[-1]
    assert len(server.requests) == 3 and tree.levels == 2


def test_parse_answer_json_variants() -> None:
    assert parse_answer_json('{"a": 1}') == {"a": 1}
    assert parse_answer_json('Sure!\n```json\n{"a": 2}\n```\nbye') == {"a": 2}
    assert parse_answer_json('The answer is {"a": 3}. Done.') == {"a": 3}
    with pytest.raises(AnswerNotJSON, match="not valid JSON"):
        parse_answer_json('{"a": }')
    with pytest.raises(AnswerNotJSON, match="empty"):
        parse_answer_json("   ")
    with pytest.raises(AnswerNotJSON, match="not an object"):
        parse_answer_json("[1, 2]")


# ------------------------------------------------------------------ cache and the key
def test_cache_hit_sends_no_second_request_and_rebuilds_the_same_tree(tmp_path: Path) -> None:
    with LLMServer([Reply.json(answer(NETTE_GROUPS))], fallback=rule_grouper) as server:
        first = build(server, tmp_path)
        report = BuildReport()
        again = build(server, tmp_path, report=report)
        assert len(server.requests) == 1
        assert report.cached_steps == 1 and report.requests == 0
        assert again.to_dict()["nodes"] == first.to_dict()["nodes"]
        assert again.provenance["llm"] == first.provenance["llm"]
        build(server, tmp_path, refresh=True)  # asks again (the rule server answers)...
        assert len(server.requests) == 2
        refreshed = build(server, tmp_path)  # ...and the refreshed answer replaced the old one
        assert len(server.requests) == 2
        assert parent_names(refreshed)["tench"] == "names s-z"
        other_model = build(server, tmp_path, model="other-model")  # the key includes the model
        assert len(server.requests) == 3 and other_model.levels == 2


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    with LLMServer(fallback=rule_grouper) as server:
        build(server, tmp_path, use_cache=False)
        build(server, tmp_path, use_cache=False)
    assert len(server.requests) == 2
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir_comes_from_nhl_cache_dir(tmp_path: Path) -> None:
    with LLMServer(fallback=rule_grouper) as server:
        build(server, tmp_path, cache_dir=None)
    assert len(files_under(tmp_path / "default-cache" / "llm")) == 1


def test_the_key_is_in_no_file_written(tmp_path: Path) -> None:
    out = tmp_path / "written"
    with LLMServer(
        [Reply.fail(429), Reply.json(answer(NETTE_GROUPS))], fallback=rule_grouper
    ) as server:
        tree = build(server, tmp_path, cache_dir=out / "cache")
        tree.save(out / "tree.json")
        build(server, tmp_path, cache_dir=out / "cache", levels=3)
    assert all(h == f"Bearer {SECRET}" for h in server.auth_headers)  # the key was used
    written = files_under(out)
    assert len(written) == 3  # the tree and two cache entries
    for path in written:
        assert SECRET not in path.read_text(encoding="utf-8"), path
    entry = json.loads(next(p for p in written if p.parent.parent.name == "llm").read_text())
    assert entry["server"] == server.url and entry["model"] == "test-model"


# ------------------------------------------------------------------ labels and mapping back
def test_duplicate_names_get_hints_and_map_back(shared_data: Path) -> None:
    cat = imagenet()
    cranes = [c for c in cat.classes if c.name == "crane"]
    refs = [c.ref for c in cranes] + [cat.by_wnid["n01440764"].ref]
    labels = make_labels(refs)
    assert labels.labels == ("crane (wading bird)", "crane (lifting device)", "tench")
    assert labels.resolve("Crane (Wading_Bird)").wnid == "n02012849"
    assert labels.resolve("crane n03126707").wnid == "n03126707"
    assert labels.resolve("crane").problem == (
        "'crane' is ambiguous: write 'crane (wading bird)' or 'crane (lifting device)'"
    )
    assert labels.resolve("Tench (fish)").wnid == "n01440764"
    assert labels.resolve(7).problem == "7 is not a class label (expected a string)"


def test_duplicate_names_without_a_wordnet_parent_use_the_wnid() -> None:
    refs = [ClassRef("n99999991", "widget"), ClassRef("n99999992", "Widget")]
    labels = make_labels(refs)
    assert labels.labels == ("widget (n99999991)", "Widget (n99999992)")
    assert labels.resolve("widget").problem == (
        "'widget' is ambiguous: write 'widget (n99999991)' or 'Widget (n99999992)'"
    )


# ------------------------------------------------------------------ large sets
def expected_requests(labels: list[str], depth: int, batch: int, level: int = 1) -> int:
    """Requests the top-down strategy needs against the rule server (computed independently)."""
    if len(labels) <= batch:
        return 1
    buckets: dict[str, list[str]] = {}
    for lab in labels:
        buckets.setdefault(_key(lab, level), []).append(lab)
    here = 1 + math.ceil(len(labels) / batch)
    if depth == 1:
        return here
    return here + sum(expected_requests(b, depth - 1, batch, level + 1) for b in buckets.values())


def test_imagenet100_three_levels_end_to_end(tmp_path: Path) -> None:
    classes = builtin_set("imagenet100")
    labels = list(make_labels(classes.classes).labels)
    with LLMServer(fallback=rule_grouper) as server:
        one = build(server, tmp_path, classes=classes, levels=3, use_cache=False)
        assert len(server.requests) == 1
        report = BuildReport()
        steps: list[tuple[int, int, str]] = []
        tree = build_llm_tree(
            classes,
            3,
            None,
            options(server, tmp_path, batch_size=30, use_cache=False),
            progress=lambda d, t, s: steps.append((d, t, s)),
            report=report,
        )
    want = expected_requests(labels, 2, 30)
    assert report.requests == want == len(server.requests) - 1 == 11
    assert tree.levels == 3 and tree.class_ids == classes.wnids
    for c, lab in zip(tree.classes, labels, strict=True):
        assert [tree.node(n).name for n in tree.path(c.id)[:-1]] == [_key(lab, 1), _key(lab, 2)]
    assert parent_names(tree) == parent_names(one)
    done = [d for d, _, s in steps if s]
    assert done == list(range(1, want + 1)) and steps[-1][0] == steps[-1][1] == want
    kinds = [task_of(b)["kind"] for b in server.requests[1:]]
    assert kinds[:5] == ["propose", "assign", "assign", "assign", "assign"]


def test_group_counts_are_shared_out_for_sub_problems(tmp_path: Path) -> None:
    classes = builtin_set("imagenet100")
    labels = list(make_labels(classes.classes).labels)
    tops = list(dict.fromkeys(_key(lab, 1) for lab in labels))
    sizes = [sum(_key(lab, 1) == t for lab in labels) for t in tops]

    def by_count(body: dict[str, Any]) -> Reply:
        task = task_of(body)
        if task["kind"] != "group":
            return Reply.json(rule_answer(body))
        want = task["groups_per_level"][0]  # split the classes into `want` chunks in order
        labs = task["classes"]
        chunks = [labs[i * len(labs) // want : (i + 1) * len(labs) // want] for i in range(want)]
        ctx = task["context"][0]
        return Reply.json(answer({f"{ctx} part {i}": ch for i, ch in enumerate(chunks)}))

    with LLMServer(fallback=by_count) as server:
        tree = build(server, tmp_path, classes=classes, levels=3, groups=[4, 10], batch_size=40)
    assert len(tree.level(1)) == 4 and len(tree.level(2)) == 10
    per_top = [len(tree.children(n)) for n in tree.level(1)]
    assert per_top == apportion(
        10, [sizes[tops.index(tree.node(n).name)] for n in tree.level(1)], [1, 1, 1, 1]
    )


def test_apportion_and_share_counts() -> None:
    assert apportion(10, [50, 30, 20], [1, 1, 1]) == [5, 3, 2]
    assert apportion(4, [1, 1, 10], [1, 1, 1]) == [1, 1, 2]
    assert apportion(2, [5, 5, 5], [1, 1, 1]) is None  # fewer than one per parent
    assert apportion(7, [1, 2, 3], [1, 1, 1]) is None  # more groups than classes
    assert share_counts([3, None], [2, 2]) == [[2, None], [1, None]]
    assert share_counts([5, None], [2, 2]) is None
    assert share_counts([2, 3], [3, 3]) == [[1, 2], [1, 1]]
    assert share_counts([5, None], [4, 6]) == [[2, None], [3, None]]


def test_levels_and_groups_are_checked() -> None:
    assert requested_group_counts(10, 3, [2]) == [2, None]
    for levels, groups, msg in [
        (0, None, "--levels must be at least 1"),
        (2, [2, 3], "--groups gives 2 count(s) but a 2-level tree has 1 level(s) of groups"),
        (3, [4, 3], "--groups: level 2 needs at least 4 group(s)"),
        (2, [11], "level 1 asks for 11 groups but there are only 10 classes"),
    ]:
        with pytest.raises(NhlError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            requested_group_counts(10, levels, groups)


def test_one_level_needs_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    tree = build_llm_tree(NETTE, 1, None, LLMOptions(base_url="http://127.0.0.1:9/v1"))
    assert tree.levels == 1 and tree.class_ids == NETTE.wnids and not tree.nodes


# ------------------------------------------------------------------ hybrid
def hybrid_reference(classes: ClassSet, levels: int) -> tuple[Tree, dict[str, str]]:
    """The WordNet tree and the ambiguous classes by the documented rule."""
    from nhlcli.hierarchy.wordnet_source import build_wordnet_tree, wordnet_placement_info

    wn = build_wordnet_tree(classes, levels, None, date=None)
    info = wordnet_placement_info(classes)
    amb = {}
    for c in wn.classes:
        if info[c.id].ambiguous:
            amb[c.id] = "several_parents"
        elif len(wn.leaves_under(c.parent)) == 1:
            amb[c.id] = "alone"
    return wn, amb


@pytest.mark.parametrize("set_name", ["imagenet100", "first40+balls"])
def test_hybrid_asks_only_about_ambiguous_classes(
    shared_data: Path, tmp_path: Path, set_name: str
) -> None:
    if set_name == "imagenet100":
        classes = builtin_set("imagenet100")
    else:  # ImageNet's balls have two WordNet parents each (ball + the sport's equipment)
        cat = imagenet()
        balls = ["golf ball", "baseball", "basketball", "croquet ball"]
        refs = [c.ref for c in cat.classes[:40]] + [cat.lookup_name(b)[0].ref for b in balls]
        classes = ClassSet("mixed", "test", tuple(refs))
    wn, amb = hybrid_reference(classes, 3)
    labels = make_labels(classes.classes)
    with LLMServer(fallback=rule_grouper) as server:
        report = BuildReport()
        tree = build_hybrid_tree(classes, 3, None, options(server, tmp_path), report=report)
    assert len(server.requests) == 1 and report.llm_classes == len(amb) > 0
    task = task_of(server.requests[0])
    assert task["kind"] == "place"
    assert task["classes"] == [labels.label(w) for w in classes.wnids if w in amb]
    if set_name != "imagenet100":
        assert {amb[cat.lookup_name(b)[0].wnid] for b in balls} == {"several_parents"}
    assert tree.levels == 3 and tree.class_ids == classes.wnids
    for c in tree.classes:
        names = [tree.node(n).name for n in tree.path(c.id)[:-1]]
        if c.id not in amb:
            assert c.attrs["placed_by"] == "wordnet"
            assert tree.path(c.id) == wn.path(c.id)
            continue
        assert c.attrs["placed_by"] == "llm" and c.attrs["llm_reason"] == amb[c.id]
        chosen = place_rule(labels.label(c.id), task["groups"], task["keep"])
        if chosen == task["keep"]:
            assert tree.path(c.id) == wn.path(c.id)
        else:
            assert " > ".join(names) == chosen
    assert tree.provenance["placed_by"] == {"wordnet": len(classes) - len(amb), "llm": len(amb)}
    assert tree.provenance["source"] == "hybrid"
    kept = {n for c in tree.classes for n in tree.path(c.id)[:-1]}
    assert {n.id for n in tree.nodes} == kept  # no empty groups left over


def test_hybrid_without_clear_classes_asks_for_the_whole_tree(
    shared_data: Path, tmp_path: Path
) -> None:
    cat = imagenet()
    classes = ClassSet("two", "test", (cat.by_wnid["n01440764"].ref, cat.by_wnid["n03028079"].ref))
    _, amb = hybrid_reference(classes, 3)
    assert set(amb) == set(classes.wnids)  # tench and church: each alone
    report = BuildReport()
    with LLMServer(fallback=rule_grouper) as server:
        tree = build_hybrid_tree(classes, 3, None, options(server, tmp_path), report=report)
    assert [task_of(b)["kind"] for b in server.requests] == ["group"]
    assert {c.attrs["placed_by"] for c in tree.classes} == {"llm"}
    assert tree.provenance["source"] == "hybrid" and tree.levels == 3
    assert report.notes == ["no class has a clear WordNet place: the model built the whole tree"]


def test_proposed_group_without_classes_is_dropped_with_a_note(tmp_path: Path) -> None:
    def with_unused_group(body: dict[str, Any]) -> Reply:
        data = rule_answer(body)
        if task_of(body)["kind"] == "propose":
            data["groups"].append({"name": "unused", "description": "nothing goes here"})
        return Reply.json(data)

    report = BuildReport()
    with LLMServer(fallback=with_unused_group) as server:
        tree = build(server, tmp_path, levels=2, batch_size=4, report=report)
    assert report.notes == ["1 proposed group(s) received no class and were dropped: 'unused'"]
    assert sorted(tree.node(n).name for n in tree.level(1)) == sorted(
        {_key(c.name, 1) for c in NETTE.classes}
    )
    assert [task_of(b)["kind"] for b in server.requests] == ["propose"] + ["assign"] * 3


# ------------------------------------------------------------------ the command line
def run_cli(args: list[str]) -> int:
    from nhlcli.cli.app import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_builds_an_llm_tree_and_reports_the_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tree.json"
    args = [
        "build-tree",
        "--source",
        "llm",
        "--classes",
        "imagenet100",
        "--levels",
        "3",
        "--llm-model",
        "test-model",
        "--batch-size",
        "30",
        "--llm-cache-dir",
        str(tmp_path / "c"),
        "-o",
        str(out),
        "--json",
    ]
    with LLMServer(fallback=rule_grouper) as server:
        assert run_cli([*args, "--llm-base-url", server.url]) == 0
        first = capsys.readouterr()
        assert run_cli([*args, "--llm-base-url", server.url]) == 0  # all from the cache
        second = capsys.readouterr()
    assert len(server.requests) == 11
    result = json.loads(first.out)
    assert result["llm"]["requests"] == 11 and result["llm"]["cached_steps"] == 0
    assert json.loads(second.out)["llm"] == {
        **result["llm"],
        "requests": 0,
        "cached_steps": 11,
        "format_mode": None,
    }
    assert "11 answer(s), 11 from the cache, 0 request(s)" in second.err
    tree = Tree.load(out)
    assert tree.levels == 3 and tree.provenance["llm"]["server"] == server.url
    for text in (out.read_text(), first.out, first.err, second.out, second.err):
        assert SECRET not in text


def test_cli_hybrid_records_who_placed_each_class(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "hybrid.json"
    with LLMServer(fallback=rule_grouper) as server:
        code = run_cli(
            [
                "build-tree",
                "--source",
                "hybrid",
                "--classes",
                "imagenette",
                "--levels",
                "3",
                "--llm-base-url",
                server.url,
                "--llm-no-cache",
                "-o",
                str(out),
            ]
        )
    assert code == 0 and len(server.requests) == 1
    tree = Tree.load(out)
    _, amb = hybrid_reference(NETTE, 3)
    assert {c.id for c in tree.classes if c.attrs["placed_by"] == "llm"} == set(amb)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("refused", "error: cannot connect to the model server at {url}: connection refused"),
        ("no-key", "error: no API key: the environment variable NHL_TEST_KEY is not set"),
        ("wrong-key", "error: the model server at {url} rejected the API key from $OPENAI_API_KEY"),
        (
            "not-converging",
            "error: grouping 10 classes: the answer of model 'gpt-4o' at {url} is "
            "still invalid after 1 repair(s); nothing was written: ",
        ),
        ("bad-url", "error: 'localhost:11434' is not an http(s) URL for the model server"),
    ],
)
def test_cli_errors_are_one_line_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    out = tmp_path / "tree.json"
    script = [Reply.json(with_change(animals=["tench"]))] * 2
    with LLMServer(script, api_key="sk-other" if case == "wrong-key" else None) as server:
        url = server.url
        if case == "refused":
            url = closed_port_url()
        if case == "bad-url":
            url = "localhost:11434"
        args = [
            "build-tree",
            "--source",
            "llm",
            "--classes",
            "imagenette",
            "--levels",
            "2",
            "--llm-base-url",
            url,
            "--max-repairs",
            "1",
            "--llm-cache-dir",
            str(tmp_path / "c"),
            "-o",
            str(out),
        ]
        if case == "no-key":
            args += ["--llm-api-key-env", "NHL_TEST_KEY"]
        code = run_cli(args)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith(expected.format(url=url)), err
    assert SECRET not in err
    assert not out.exists() and not (tmp_path / "c").exists()


def test_cli_help_lists_the_llm_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["build-tree", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--llm-model",
        "--llm-base-url",
        "--llm-api-key-env",
        "--llm-max-repairs",
        "--llm-cache-dir",
        "--llm-no-cache",
        "--llm-refresh",
        "--llm-timeout",
        "--llm-deadline",
        "--llm-batch-size",
    ):
        assert option in text
    assert "--source llm" in text and "localhost:11434/v1" in text


# ------------------------------------------------------------------ bodies that are not completions
@pytest.mark.parametrize(
    "raw", ["<html><body>502 Bad Gateway</body></html>", "", "{not json", '"a string"', "[1, 2]"]
)
def test_a_200_answer_that_is_not_a_completion_is_retried_then_one_error(
    tmp_path: Path, raw: str
) -> None:
    with LLMServer([Reply.body(raw)] * 3) as server, pytest.raises(NhlError) as err:
        build(server, tmp_path)
    assert len(server.requests) == 3  # the first try and max_retries=2 retries
    assert "failed 3 time(s)" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "cache").exists() or not files_under(tmp_path / "cache")


def test_a_200_answer_that_is_not_a_completion_then_a_good_one(tmp_path: Path) -> None:
    script = [Reply.body("<html>proxy</html>"), Reply.json(answer(NETTE_GROUPS))]
    with LLMServer(script) as server:
        tree = build(server, tmp_path)
    assert len(server.requests) == 2 and tree.num_classes == 10


@pytest.mark.parametrize("echo", [SECRET, SECRET.upper(), SECRET.lower(), SECRET.swapcase()])
def test_an_answer_echoing_the_key_in_any_case_never_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], echo: str
) -> None:
    # as a group name that becomes part of the tree, and as a class label the check rejects
    good = with_change(**{f"animals {echo}": ["tench", "English springer"]})
    del good["groups"][0]
    with LLMServer([Reply.json(good)]) as server:
        tree = build(server, tmp_path, use_cache=False)
    text = tree.to_json()
    assert echo.lower() not in text.lower() and "animals ***" in text
    bad = with_change(animals=["tench", echo])
    out = tmp_path / "t.json"
    with LLMServer([Reply.json(bad)] * 3) as server:
        code = run_cli(["build-tree", "--source", "llm", "--classes", "imagenette", "--levels",
                        "2", "--base-url", server.url, "--max-repairs", "1", "--no-cache",
                        "-o", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert echo.lower() not in err.lower() and not out.exists()


# ------------------------------------------------------------------ secrets in error messages
def key_pieces(key: str) -> list[str]:
    """What must never be shown of a key: the key and each run of 4+ printable ASCII in it."""
    return [key, *(p for p in re.findall(r"[!-~]+", key) if len(p) >= 4)]


BAD_KEYS = {
    "two-lines": ("sk-proj-Alpha1234567\nsk-proj-Bravo7654321", "spans several lines"),
    "carriage-return": ("sk-proj-Alpha1234567\rBravo7654321", "spans several lines"),
    "space": ("sk-proj-Alpha1234567 Bravo7654321", "holds a space or tab"),
    "control": ("sk-proj-Alpha1234567\x01Bravo7654321", "holds a control character"),
    "not-ascii": ("sk-proj-Alpha1234567\u00c4Bravo7654321", "holds a character that is not ASCII"),
    "typographic-quote": ("\u201csk-proj-Alpha1234567Bravo\u201d", "holds a character that is not"),
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_a_bad_key_is_refused_in_one_line_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    key, problem = BAD_KEYS[case]
    monkeypatch.setenv("OPENAI_API_KEY", key)
    out = tmp_path / "tree.json"
    with LLMServer(fallback=rule_grouper) as server:
        started = time.monotonic()
        code = run_cli(["build-tree", "--source", "llm", "--classes", "imagenette", "--levels",
                        "2", "--llm-base-url", server.url, "--llm-no-cache",
                        "-o", str(out)])  # fmt: skip
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: the API key in $OPENAI_API_KEY {problem}"), err
    for piece in key_pieces(key):
        assert piece.lower() not in err.lower(), piece
    assert server.requests == [] and server.auth_headers == []  # nothing reached the server
    assert elapsed < 5  # no retries, no backoff
    assert not out.exists()


def test_scrub_hides_the_key_and_its_pieces_before_cutting() -> None:
    key = "sk-proj-Alpha1234567\nsk-proj-Bravo7654321"
    text = f"Illegal header value b'Bearer {key!r}'"
    assert scrub(text, key) == "Illegal header value b'Bearer '***\\n***''"
    long_key = "sk-proj-" + "Q1w2E3r4" * 12
    shown = scrub("x" * 250 + long_key.upper() + " and more", long_key)
    assert shown == "x" * 250 + "*** and more" and len(shown) <= 300
    cut = scrub("x" * 280 + long_key, long_key)  # the cut comes after hiding: no prefix left
    assert "Q1w2" not in cut and len(cut) <= 300
    assert scrub("line one\n  line two", "") == "line one line two"
    assert hide_secret("ab sk-x", "sk-x\nab") == "ab ***"  # a 2-character piece stays


def test_a_connection_failure_echoing_the_key_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-proj-" + "Zq9Xw8Cv7Bn6" * 8  # 104 characters: longer than the old 120-character cut
    monkeypatch.setenv("OPENAI_API_KEY", key)
    # a server that answers with a garbled status line quoting the Authorization header
    with LLMServer([Reply(broken="{auth}")]) as server, pytest.raises(NhlError) as err:
        build(server, tmp_path, max_retries=0)
    msg = str(err.value)
    assert server.auth_headers == [f"Bearer {key}"]
    assert "connection failed (illegal status line" in msg and "***" in msg, msg
    for piece in (key, key[:20], key[-20:], "Zq9Xw8Cv7Bn6"):
        assert piece.lower() not in msg.lower()


# ------------------------------------------------------------------ deadlines
def finished_within(seconds: float, fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn's result or exception, its time), failing when it does not end within `seconds`."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as e:
            outcome.append(e)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return outcome[0], time.monotonic() - started


def test_a_dripping_server_is_cut_off_at_the_request_timeout(tmp_path: Path) -> None:
    # one byte every 0.4 s: no single read waits longer than 1.5 s, the answer never completes
    drip = Reply.json(answer(NETTE_GROUPS), drip=0.4)
    with LLMServer([drip]) as server:
        result, elapsed = finished_within(
            30, lambda: build(server, tmp_path, timeout=1.5, max_retries=0, use_cache=False)
        )
    assert isinstance(result, NhlError), result
    assert str(result) == (
        f"the model server at {server.url} failed 1 time(s), last: no complete answer within "
        "1.5 s; try again later or raise --llm-timeout"
    )
    assert 1.5 < elapsed < 10


def test_llm_deadline_bounds_the_whole_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tree.json"
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    with LLMServer([Reply.json(answer(NETTE_GROUPS), drip=0.4)] * 10) as server:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "nhlcli", "build-tree", "--source", "llm", "--classes",
             "imagenette", "--levels", "2", "--llm-base-url", server.url, "--llm-no-cache",
             "--llm-timeout", "60", "--llm-deadline", "2", "-o", str(out)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(
        f"error: the model server at {server.url} did not finish within --llm-deadline (2 s for "
        "all requests of one build); last: no complete answer within "
    )  # within what the build had left (making the client took some of the 2 s)
    assert elapsed < 30 and len(server.requests) == 1  # starting Python takes a few seconds
    assert not out.exists()
    # with a retry in the build: a timed-out first try, the second cut at the deadline
    with LLMServer([Reply.json(answer(NETTE_GROUPS), drip=0.4)] * 10) as server:
        result, elapsed = finished_within(
            30,
            lambda: build(
                server, tmp_path, timeout=1.0, deadline=2.5, max_retries=5, use_cache=False
            ),
        )
    assert isinstance(result, NhlError) and "did not finish within --llm-deadline" in str(result)
    assert 2.5 < elapsed < 10 and len(server.requests) >= 2
    assert LLMOptions(deadline=0).problems() == [
        "--llm-deadline must be a positive number of seconds"
    ]


# ------------------------------------------------------------------ answers of any size
def test_a_repair_quotes_a_bounded_part_of_a_huge_answer(tmp_path: Path) -> None:
    huge = with_change(animals=["tench", "English springer", *(f"made up {i}" for i in range(900))])
    huge["groups"].append({"name": "g" * 1_000_000, "classes": ["church"]})
    with LLMServer([Reply.json(huge), Reply.json(answer(NETTE_GROUPS))]) as server:
        report = BuildReport()
        tree = build(server, tmp_path, report=report)
    assert tree.num_classes == 10 and report.repairs == 1
    repair = server.requests[1]
    quoted_answer = repair["messages"][-2]["content"]
    assert quoted_answer.startswith(json.dumps(huge)[:QUOTE_CHARS])
    assert len(quoted_answer) < QUOTE_CHARS + 200
    assert quoted_answer.endswith(f"only its first {QUOTE_CHARS:,} are quoted]")
    prompt = last_user_message(repair)
    assert "is not one of the given classes" in prompt and "more problems" in prompt
    assert len(prompt) < REPAIR_PROBLEMS * 520
    assert len(json.dumps(repair)) < 60_000  # the question, 20,000 quoted characters, the problems


def test_an_answer_over_the_size_bound_is_refused_in_one_line(tmp_path: Path) -> None:
    huge = Reply.text("x" * (MAX_ANSWER_BYTES + 1))
    with LLMServer([huge] * 5) as server, pytest.raises(NhlError) as err:
        build(server, tmp_path)
    assert str(err.value) == (
        f"the model server at {server.url} sent an answer larger than 2,000,000 bytes, more than "
        "nhl accepts (a valid answer is well under 100 kB; check the model and the server)"
    )
    assert len(server.requests) == 1  # neither retried nor repaired
    assert not (tmp_path / "cache").exists()
