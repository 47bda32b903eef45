"""ingest_paths end to end: formats, skip-unchanged, edits, deletions, failures and ACLs."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tether.errors import EmbeddingError
from tether.indexer import IngestReport, ingest_paths
from tether.models.embedder import TextKind, Vectors
from tether.models.fake import HashEmbedder
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore
from tether.types import PUBLIC, Chunk

FIXTURES = Path(__file__).parents[2] / "fixtures"
TENANT = "acme"
SCOPE = Scope(TENANT)
DOC_FORMATS = {
    "chats.jsonl": "chats",
    "client.ts": "code",
    "guide.md": "markdown",
    "page.html": "html",
    "prices.csv": "csv",
    "report.pdf": "pdf",
    "store.py": "python",
    "ticket_events.jsonl": "tickets",
    "tickets.jsonl": "tickets",
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", folder)
    return folder


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    embedder = HashEmbedder()
    db = SQLiteStore(tmp_path / "ingest.db", embed_model=embedder.model_id, dim=embedder.dim)
    yield db
    await db.close()


def sid(path: Path) -> str:
    return path.resolve().as_posix()


def by_name(report: IngestReport) -> dict[str, str]:
    return {Path(f.source_id).name: f.status for f in report.files}


async def all_chunks(store: SQLiteStore, scope: Scope = SCOPE) -> list[Chunk]:
    """Every chunk the scope may see, through the public API only."""
    hits = await store.vector_search(scope, np.ones(64, np.float32) / 8.0, [], 100_000)
    return await store.get_chunks(scope, [cid for cid, _ in hits])


def ids_by_source(chunks: Sequence[Chunk]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for chunk in chunks:
        out.setdefault(Path(chunk.source_id).name, set()).add(chunk.id)
    return out


async def keyword_sources(store: SQLiteStore, text: str, scope: Scope = SCOPE) -> set[str]:
    hits = await store.keyword_search(scope, text, [], 100)
    return {Path(c.source_id).name for c in await store.get_chunks(scope, [h for h, _ in hits])}


async def test_fixture_folder_ingests_every_format(docs: Path, store: SQLiteStore) -> None:
    embedder = HashEmbedder()
    report = await ingest_paths([docs], store=store, embedder=embedder, tenant_id=TENANT)

    assert report.tenant_id == TENANT
    assert [f.status for f in report.files] == ["ok"] * len(DOC_FORMATS), report.files
    assert {Path(f.source_id).name: f.format for f in report.files} == DOC_FORMATS
    assert Counter(f.format for f in report.files) == Counter(DOC_FORMATS.values())
    assert {f.source_id for f in report.files} == {sid(docs / n) for n in DOC_FORMATS}
    assert all(f.chunks > 0 and not f.reason for f in report.files)

    total = sum(f.chunks for f in report.files)
    assert report.chunks_written == total
    assert embedder.texts_embedded == total
    assert await store.count_chunks(SCOPE) == total
    records = {r.source_id: r for r in await store.list_documents(SCOPE)}
    assert {s: r.chunk_count for s, r in records.items()} == {
        f.source_id: f.chunks for f in report.files
    }
    chunks = await all_chunks(store)
    assert len(chunks) == total
    per_source = Counter(c.source_id for c in chunks)
    assert per_source == Counter({f.source_id: f.chunks for f in report.files})
    assert all(c.tenant_id == TENANT and c.acl == (PUBLIC,) for c in chunks)
    # Positions run 0..n-1 within every document.
    for source, n in per_source.items():
        assert sorted(c.position for c in chunks if c.source_id == source) == list(range(n))
    assert await keyword_sources(store, "espresso") == {"prices.csv"}


async def test_reingesting_an_unchanged_folder_writes_nothing(
    docs: Path, store: SQLiteStore
) -> None:
    await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    before = await all_chunks(store)
    records = await store.list_documents(SCOPE)

    embedder = HashEmbedder()
    report = await ingest_paths([docs], store=store, embedder=embedder, tenant_id=TENANT)
    assert [f.status for f in report.files] == ["unchanged"] * len(DOC_FORMATS)
    assert embedder.calls == 0
    assert report.chunks_written == 0
    assert await store.list_documents(SCOPE) == records  # same ingested_at: not rewritten
    assert {c.id for c in await all_chunks(store)} == {c.id for c in before}


async def test_editing_one_file_replaces_exactly_its_chunks(docs: Path, store: SQLiteStore) -> None:
    await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    before = await all_chunks(store)
    old = ids_by_source(before)
    old_guide = {c.id: c.text for c in before if c.source_id == sid(docs / "guide.md")}

    guide = docs / "guide.md"
    sentence = "A scanned PDF without a text layer produces no chunks"
    assert sentence in guide.read_text(encoding="utf-8")
    guide.write_text(
        guide.read_text(encoding="utf-8").replace(
            sentence, "A scanned zanzibar PDF without a text layer produces no chunks"
        ),
        encoding="utf-8",
    )

    embedder = HashEmbedder()
    report = await ingest_paths([docs], store=store, embedder=embedder, tenant_id=TENANT)
    statuses = by_name(report)
    assert statuses.pop("guide.md") == "ok"
    assert set(statuses.values()) == {"unchanged"}
    after = await all_chunks(store)
    new = ids_by_source(after)

    for name in DOC_FORMATS:
        if name != "guide.md":
            assert new[name] == old[name], name
    touched = {cid for cid, text in old_guide.items() if "scanned PDF" in text}
    untouched = set(old_guide) - touched
    assert touched
    assert not touched & new["guide.md"]  # the edited chunk's old id is gone
    assert untouched <= new["guide.md"]  # chunks the edit did not touch keep their ids
    assert await store.get_chunks(SCOPE, sorted(touched)) == []
    assert len(new["guide.md"]) == len(old_guide)
    assert embedder.texts_embedded == len(new["guide.md"])
    assert await keyword_sources(store, "zanzibar") == {"guide.md"}
    assert await store.count_chunks(SCOPE) == len(before)


async def test_rewriting_a_file_replaces_all_its_chunks(docs: Path, store: SQLiteStore) -> None:
    await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    old = ids_by_source(await all_chunks(store))
    (docs / "guide.md").write_text("# Short\n\nOnly a quokka lives here now.\n", encoding="utf-8")
    report = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert by_name(report)["guide.md"] == "ok"
    new = ids_by_source(await all_chunks(store))
    assert len(new["guide.md"]) == 1
    assert not new["guide.md"] & old["guide.md"]
    assert await store.get_chunks(SCOPE, sorted(old["guide.md"])) == []
    assert await keyword_sources(store, "quokka") == {"guide.md"}
    assert "guide.md" not in await keyword_sources(store, "scanned OCR troubleshooting editable")


async def test_deleting_a_file_removes_its_chunks(docs: Path, store: SQLiteStore) -> None:
    await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    old = ids_by_source(await all_chunks(store))
    assert await keyword_sources(store, "espresso") == {"prices.csv"}

    (docs / "prices.csv").unlink()
    embedder = HashEmbedder()
    report = await ingest_paths([docs], store=store, embedder=embedder, tenant_id=TENANT)
    statuses = by_name(report)
    assert statuses.pop("prices.csv") == "removed"
    assert set(statuses.values()) == {"unchanged"}
    assert embedder.calls == 0
    assert await store.get_chunks(SCOPE, sorted(old["prices.csv"])) == []
    assert await keyword_sources(store, "espresso") == set()
    assert sid(docs / "prices.csv") not in {r.source_id for r in await store.list_documents(SCOPE)}
    assert await store.count_chunks(SCOPE) == sum(
        len(ids) for name, ids in old.items() if name != "prices.csv"
    )
    # A later run has nothing left to remove.
    again = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert set(by_name(again).values()) == {"unchanged"}
    assert len(again.files) == len(DOC_FORMATS) - 1


async def test_ingesting_a_subfolder_or_file_does_not_remove_siblings(
    docs: Path, store: SQLiteStore
) -> None:
    (docs / "sub").mkdir()
    (docs / "sub" / "inner.md").write_text("# Inner\n\nPlatypus notes.\n", encoding="utf-8")
    first = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert first.count("ok") == len(DOC_FORMATS) + 1

    report = await ingest_paths(
        [docs / "sub"], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    assert by_name(report) == {"inner.md": "unchanged"}
    for path in (docs / "guide.md", docs / "sub" / "inner.md"):
        report = await ingest_paths([path], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
        assert [f.source_id for f in report.files] == [sid(path)]
        assert report.count("failed") == report.count("removed") == 0
    assert len(await store.list_documents(SCOPE)) == len(DOC_FORMATS) + 1

    (docs / "sub" / "inner.md").unlink()
    report = await ingest_paths(
        [docs / "sub"], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    assert by_name(report) == {"inner.md": "removed"}
    assert len(await store.list_documents(SCOPE)) == len(DOC_FORMATS)


async def test_reingesting_an_unchanged_single_file_writes_nothing(
    docs: Path, store: SQLiteStore
) -> None:
    """A file named directly (not via its folder) is also skipped when unchanged."""
    guide = docs / "guide.md"
    first = await ingest_paths([guide], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert [f.status for f in first.files] == ["ok"]
    records = await store.list_documents(SCOPE)

    embedder = HashEmbedder()
    second = await ingest_paths([guide], store=store, embedder=embedder, tenant_id=TENANT)
    assert [(f.source_id, f.status) for f in second.files] == [(sid(guide), "unchanged")]
    assert embedder.calls == 0
    assert second.chunks_written == 0
    assert await store.list_documents(SCOPE) == records


async def test_symlinked_file_in_a_folder_is_skipped_when_unchanged_and_removed_when_gone(
    tmp_path: Path, docs: Path, store: SQLiteStore
) -> None:
    """Source ids are resolved paths, so a linked file's id lies outside the folder."""
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "faq.md").write_text("# FAQ\n\nThe capybara answers.\n", encoding="utf-8")
    link = docs / "faq.md"
    link.symlink_to(outside / "faq.md")

    first = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert first.count("ok") == len(DOC_FORMATS) + 1
    assert await keyword_sources(store, "capybara") == {"faq.md"}

    embedder = HashEmbedder()
    second = await ingest_paths([docs], store=store, embedder=embedder, tenant_id=TENANT)
    assert set(by_name(second).values()) == {"unchanged"}
    assert embedder.calls == 0

    link.unlink()
    third = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert by_name(third)["faq.md"] == "removed"
    assert await keyword_sources(store, "capybara") == set()


async def test_hidden_folders_and_files_are_skipped(docs: Path, store: SQLiteStore) -> None:
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.md").write_text("# Hidden\n\nsecret wombat\n", encoding="utf-8")
    (docs / ".draft.md").write_text("# Hidden\n\nsecret wombat\n", encoding="utf-8")
    report = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert set(by_name(report)) == set(DOC_FORMATS)
    assert await keyword_sources(store, "wombat") == set()


async def test_relative_and_absolute_paths_name_the_same_source(
    docs: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(docs.parent)
    first = await ingest_paths(
        [Path("docs")], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    assert {f.source_id for f in first.files} == {sid(docs / n) for n in DOC_FORMATS}
    second = await ingest_paths(
        [docs.resolve()], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    assert set(by_name(second).values()) == {"unchanged"}


# -- failures -------------------------------------------------------------------------------

BAD_REASONS = {
    "broken.jsonl": ("line 3", "json"),
    "corrupt.pdf": ("corrupt",),
    "empty.md": ("no text",),
    "latin1.txt": ("utf-8",),
    "ragged.csv": ("line 5", "field"),
    "unknown.xyz": ("unsupported", ".xyz"),
    "big.md": ("limit", "bytes"),
}


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(FIXTURES / "bad", folder)
    (folder / "good.md").write_text("# Good\n\nThe otter survey is fine.\n", encoding="utf-8")
    (folder / "big.md").write_text("# Big\n\n" + "otter " * 2000, encoding="utf-8")
    return folder


async def test_bad_files_fail_with_reasons_and_write_nothing(bad: Path, store: SQLiteStore) -> None:
    report = await ingest_paths(
        [bad], store=store, embedder=HashEmbedder(), tenant_id=TENANT, max_file_bytes=4000
    )
    outcomes = {Path(f.source_id).name: f for f in report.files}
    assert set(outcomes) == {*BAD_REASONS, "good.md"}
    good = outcomes.pop("good.md")
    assert (good.status, good.format, good.chunks) == ("ok", "markdown", 1)
    for name, outcome in outcomes.items():
        assert outcome.status == "failed", name
        assert outcome.chunks == 0, name
        for word in BAD_REASONS[name]:
            assert word in outcome.reason.lower(), (name, outcome.reason)
    assert "4000" in outcomes["big.md"].reason

    records = await store.list_documents(SCOPE)
    assert [Path(r.source_id).name for r in records] == ["good.md"]
    assert set(await store.document_hashes(TENANT)) == {sid(bad / "good.md")}
    assert await store.count_chunks(SCOPE) == 1
    assert {Path(c.source_id).name for c in await all_chunks(store)} == {"good.md"}
    assert report.chunks_written == 1

    # Failures are retried (never cached as "unchanged"); the good file is skipped.
    embedder = HashEmbedder()
    again = await ingest_paths(
        [bad], store=store, embedder=embedder, tenant_id=TENANT, max_file_bytes=4000
    )
    statuses = by_name(again)
    assert statuses.pop("good.md") == "unchanged"
    assert set(statuses.values()) == {"failed"}
    assert embedder.calls == 0


async def test_missing_path_fails_and_others_proceed(
    tmp_path: Path, docs: Path, store: SQLiteStore
) -> None:
    missing = tmp_path / "nope" / "missing.md"
    report = await ingest_paths(
        [missing, docs / "guide.md"], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    outcomes = {f.source_id: f for f in report.files}
    assert outcomes[sid(missing)].status == "failed"
    assert outcomes[sid(missing)].reason == "no such file or folder"
    assert outcomes[sid(docs / "guide.md")].status == "ok"
    assert [r.source_id for r in await store.list_documents(SCOPE)] == [sid(docs / "guide.md")]


async def test_a_missing_path_that_was_ingested_is_removed(docs: Path, store: SQLiteStore) -> None:
    guide = docs / "guide.md"
    await ingest_paths([guide], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    guide.unlink()
    report = await ingest_paths([guide], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert [(f.source_id, f.status) for f in report.files] == [(sid(guide), "removed")]
    assert await store.count_chunks(SCOPE) == 0


class FlakyEmbedder(HashEmbedder):
    """Fails its n-th call, like a model server timing out once."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on = fail_on

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        if self.calls + 1 == self.fail_on:
            self.calls += 1
            raise EmbeddingError("embedding server timed out")
        return await super().embed(texts, kind=kind)


async def test_a_failed_batch_is_reported_and_retried(docs: Path, store: SQLiteStore) -> None:
    report = await ingest_paths(
        [docs], store=store, embedder=FlakyEmbedder(fail_on=2), tenant_id=TENANT, batch_chunks=4
    )
    failed = [f for f in report.files if f.status == "failed"]
    assert failed and report.count("ok") > 0
    assert all("timed out" in f.reason for f in failed)
    stored = {r.source_id for r in await store.list_documents(SCOPE)}
    assert stored == {f.source_id for f in report.files if f.status == "ok"}
    assert await store.count_chunks(SCOPE) == sum(
        f.chunks for f in report.files if f.status == "ok"
    )

    retry = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    statuses = {f.source_id: f.status for f in retry.files}
    assert {s for s, st in statuses.items() if st == "ok"} == {f.source_id for f in failed}
    assert {s for s, st in statuses.items() if st == "unchanged"} == stored
    assert len(await store.list_documents(SCOPE)) == len(DOC_FORMATS)


@pytest.mark.parametrize("overlap", ["folder_and_file", "folder_twice"])
async def test_overlapping_paths_ingest_each_file_once(
    docs: Path, store: SQLiteStore, overlap: str
) -> None:
    """`tether ingest docs docs/guide.md` (or the same folder twice) must not fail."""
    extra = docs / "guide.md" if overlap == "folder_and_file" else docs
    report = await ingest_paths(
        [docs, extra], store=store, embedder=HashEmbedder(), tenant_id=TENANT
    )
    assert report.count("failed") == 0, [(Path(f.source_id).name, f.reason) for f in report.files]
    assert {f.source_id for f in report.files} == {sid(docs / n) for n in DOC_FORMATS}
    assert len(await store.list_documents(SCOPE)) == len(DOC_FORMATS)


# -- tenants and ACLs -----------------------------------------------------------------------


async def test_acl_lands_on_every_chunk_and_a_change_reingests(
    docs: Path, store: SQLiteStore
) -> None:
    first = await ingest_paths(
        [docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT, acl=["team-a"]
    )
    total = sum(f.chunks for f in first.files)
    team_a = Scope(TENANT, frozenset({"team-a"}))
    team_b = Scope(TENANT, frozenset({"team-b"}))
    chunks = await all_chunks(store, team_a)
    assert len(chunks) == total
    assert {c.acl for c in chunks} == {("team-a",)}
    assert await store.count_chunks(SCOPE) == 0
    assert await store.count_chunks(team_b) == 0
    assert await store.keyword_search(SCOPE, "espresso", [], 10) == []

    # Same ACL in another order and with repeats: nothing to do.
    same = await ingest_paths(
        [docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT, acl=["team-a", "team-a"]
    )
    assert set(by_name(same).values()) == {"unchanged"}

    embedder = HashEmbedder()
    changed = await ingest_paths(
        [docs], store=store, embedder=embedder, tenant_id=TENANT, acl=["team-b", "team-a"]
    )
    assert [f.status for f in changed.files] == ["ok"] * len(DOC_FORMATS)
    assert embedder.texts_embedded == total
    chunks = await all_chunks(store, team_b)
    assert len(chunks) == total
    assert {c.acl for c in chunks} == {("team-a", "team-b")}
    assert await store.count_chunks(SCOPE) == 0

    public = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=TENANT)
    assert set(by_name(public).values()) == {"ok"}
    assert await store.count_chunks(SCOPE) == total
    assert {c.acl for c in await all_chunks(store)} == {(PUBLIC,)}
    assert await keyword_sources(store, "espresso") == {"prices.csv"}


async def test_tenants_ingest_independently(docs: Path, store: SQLiteStore) -> None:
    for tenant in ("acme", "globex"):
        report = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id=tenant)
        assert set(by_name(report).values()) == {"ok"}  # not "unchanged": another tenant
    acme, globex = Scope("acme"), Scope("globex")
    acme_ids = {c.id for c in await all_chunks(store, acme)}
    assert acme_ids == {c.id for c in await all_chunks(store, globex)}  # same ids, both tenants

    (docs / "prices.csv").unlink()
    report = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id="acme")
    assert by_name(report)["prices.csv"] == "removed"
    assert await keyword_sources(store, "espresso", acme) == set()
    assert await keyword_sources(store, "espresso", globex) == {"prices.csv"}
    assert {c.id for c in await all_chunks(store, globex)} == acme_ids


async def test_a_crashing_parser_fails_only_its_file(
    docs: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.ingest import formats

    real_parse = formats.parse

    def flaky(fmt, data, *, name, options):  # type: ignore[no-untyped-def]
        if name == "prices.csv":
            raise RuntimeError("boom inside a third-party parser")
        return real_parse(fmt, data, name=name, options=options)

    monkeypatch.setattr(formats, "parse", flaky)
    report = await ingest_paths([docs], store=store, embedder=HashEmbedder(), tenant_id="t")
    failed = [f for f in report.files if f.status == "failed"]
    assert [Path(f.source_id).name for f in failed] == ["prices.csv"]
    assert "RuntimeError" in failed[0].reason and "boom" in failed[0].reason
    assert report.count("ok") == len(report.files) - 1
    sources = {d.source_id for d in await store.list_documents(Scope("t"))}
    assert not any(s.endswith("prices.csv") for s in sources)


async def test_prepared_answers_need_no_sentence_embedding_at_question_time(
    tmp_path: Path,
) -> None:
    from tether.models.cached import CachedEmbedder
    from tether.models.extractive import extractive_answer, sentences_of
    from tether.retrieval.retrieve import retrieve

    inner = HashEmbedder(dim=32)
    embedder = CachedEmbedder(inner, tmp_path / "embeddings.db")
    store = SQLiteStore(tmp_path / "t.db", embed_model=embedder.model_id, dim=embedder.dim)
    report = await ingest_paths(
        [FIXTURES / "docs" / "guide.md"],
        store=store,
        embedder=embedder,
        tenant_id=TENANT,
        prepare_answers=True,
    )
    assert report.count("ok") == 1
    question = "Why does the nightly backup job fail on the replica?"
    context = await retrieve(store, embedder, question, scope=SCOPE, k=5)
    assert sum(len(sentences_of(c.chunk)) for c in context) > 5
    before = (embedder.misses, inner.texts_embedded)
    answer = await extractive_answer(
        question,
        context,
        embedder,
        question_vector=(await embedder.embed([question], kind="query"))[0],
    )
    assert answer.citations
    # Every candidate sentence came from the cache filled at ingest.
    assert embedder.misses == before[0]
    # Nothing at all was embedded: the question too was remembered from retrieval.
    assert inner.texts_embedded == before[1]
    embedder.close()
    await store.close()


async def test_without_preparing_the_first_answer_embeds_its_sentences(tmp_path: Path) -> None:
    from tether.models.cached import CachedEmbedder
    from tether.models.extractive import extractive_answer
    from tether.retrieval.retrieve import retrieve

    embedder = CachedEmbedder(HashEmbedder(dim=32), tmp_path / "embeddings.db")
    store = SQLiteStore(tmp_path / "t.db", embed_model=embedder.model_id, dim=embedder.dim)
    await ingest_paths(
        [FIXTURES / "docs" / "guide.md"], store=store, embedder=embedder, tenant_id=TENANT
    )
    question = "Why does the nightly backup job fail on the replica?"
    context = await retrieve(store, embedder, question, scope=SCOPE, k=5)
    misses = embedder.misses
    await extractive_answer(question, context, embedder)
    assert embedder.misses > misses
    embedder.close()
    await store.close()
