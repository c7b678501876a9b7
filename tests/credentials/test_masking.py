"""Masking: a random canary per test, hidden in every encoding, must come out as ***."""

from __future__ import annotations

import base64
import binascii
import json
import platform
import random
import re
import secrets
import sys
import urllib.parse
from collections.abc import Iterator

import pytest

from outloop_cli.credentials import prefilter
from outloop_cli.credentials.masking import (
    MASK,
    Masker,
    add_mask_commands,
    scan_files,
    secret_forms,
)
from tests.conftest import RepoFactory, git

# a dependency where wheels exist: there the fast prefilter must be the one in use
HYPERSCAN_EXPECTED = sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.fixture(autouse=True, params=["hyperscan", "substring"])
def prefilter_kind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Every masking test runs with each prefilter: they must mask exactly alike."""
    if request.param == "substring":
        monkeypatch.setattr(prefilter, "_hyperscan", lambda: None)
    elif prefilter._hyperscan() is None:
        assert not HYPERSCAN_EXPECTED, "hyperscan is a dependency on Linux x86-64"
        pytest.skip("no hyperscan wheel for this platform")
    yield request.param


def canary() -> str:
    # slashes, plus and equals make the URL and JSON forms differ from the plain one
    return f"sk/{secrets.token_urlsafe(18)}+={secrets.token_hex(4)}"


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "plain": value,
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "hex": binascii.hexlify(raw).decode(),
        "HEX": binascii.hexlify(raw).decode().upper(),
        "url": urllib.parse.quote(value, safe=""),
        "url-path": urllib.parse.quote(value),
        "url-form": urllib.parse.quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "json-slashes": json.dumps(value)[1:-1].replace("/", "\\/"),
    }


@pytest.mark.parametrize(
    "label",
    [
        "plain",
        "base64",
        "base64url",
        "base64 unpadded",
        "hex",
        "HEX",
        "url",
        "url-path",
        "url-form",
        "json",
        "json-slashes",
    ],
)
def test_every_encoding_is_masked(label: str) -> None:
    value = canary()
    form = encodings(value)[label]
    masker = Masker({"openai": value})
    text = f"before {form} after\n"
    assert masker.mask_text(text) == f"before {MASK} after\n"
    assert masker.mask_bytes(text.encode()) == f"before {MASK} after\n".encode()
    assert masker.contains_secret(text.encode())
    hits = masker.find(text)
    assert hits and hits[0].name == "openai"
    # a finding names the secret and the form, never the value
    assert value not in repr(hits)


@pytest.mark.parametrize("prefix", ["", "u:", "us:", "use:"])
def test_base64_inside_a_longer_blob_at_every_alignment(prefix: str) -> None:
    value = canary()
    header = "Basic " + base64.b64encode(f"{prefix}{value}".encode()).decode()
    masker = Masker([value])
    assert masker.contains_secret(header)
    masked = masker.mask_text(header)
    assert MASK in masked
    # nothing of the encoded value's alignment-independent part survives
    for form in secret_forms(value).values():
        assert form.decode() not in masked


def test_clean_text_is_untouched() -> None:
    value = canary()
    masker = Masker([value])
    text = "nothing to see: " + secrets.token_urlsafe(64)
    assert masker.mask_text(text) == text
    assert not masker.contains_secret(text.encode())


def test_no_values_no_masking() -> None:
    masker = Masker([])
    assert not masker
    assert masker.mask_text("abc") == "abc"
    assert not masker.contains_secret(b"abc")
    assert Masker({"x": ""}).mask_text("abc") == "abc"


def test_several_secrets_and_overlapping_forms() -> None:
    a, b = canary(), canary()
    masker = Masker({"a": a, "b": b})
    text = f"{a}{b} {a.upper()} {base64.b64encode(b.encode()).decode()}"
    out = masker.mask_text(text)
    assert a not in out and b not in out
    assert out.startswith(f"{MASK}{MASK} ")
    assert {h.name for h in masker.find(text)} == {"a", "b"}


def test_bytes_that_are_not_utf8_are_masked_too() -> None:
    value = canary()
    data = b"\xff\xfe" + value.encode() + b"\x00\x80"
    assert Masker([value]).mask_bytes(data) == b"\xff\xfe***\x00\x80"


def test_streaming_equals_masking_the_whole_at_any_chunking() -> None:
    rng = random.Random(secrets.randbits(32))
    values = [canary(), canary()]
    masker = Masker(values)
    pieces = []
    for _ in range(200):
        kind = rng.randrange(4)
        if kind == 0:
            pieces.append(values[rng.randrange(2)])
        elif kind == 1:
            pieces.append(rng.choice(list(encodings(values[rng.randrange(2)]).values())))
        else:
            pieces.append(secrets.token_hex(rng.randrange(1, 20)))
    stream_data = "".join(pieces).encode()
    expected = masker.mask_bytes(stream_data)
    for _ in range(20):
        stream = masker.stream()
        out = bytearray()
        pos = 0
        while pos < len(stream_data):
            size = rng.choice([1, 2, 3, 7, 64, 1000])
            out += stream.feed(stream_data[pos : pos + size])
            pos += size
        out += stream.flush()
        assert bytes(out) == expected
        for value in values:
            assert value.encode() not in out


def test_stream_holds_back_only_a_possible_beginning_of_a_secret() -> None:
    value = canary()
    stream = Masker([value]).stream()
    # nothing here can start a secret: all of it goes out at once (a live log stays live)
    assert stream.feed(b"event: ping\ndata: {}\n\n") == b"event: ping\ndata: {}\n\n"
    # the first half of the key is held back, then masked when the rest arrives
    half = len(value) // 2
    assert stream.feed(b"key=" + value[:half].encode()) == b"key="
    assert stream.feed(value[half:].encode() + b" done\n") == b"*** done\n"
    # a beginning that turns out not to be the key is released with what follows
    assert stream.feed(value[:half].encode()) == b""
    assert stream.feed(b"!\n") == value[:half].encode() + b"!\n"
    assert stream.flush() == b""


def test_add_mask_commands_cover_every_form_and_escape() -> None:
    value = canary()
    multi = "line-one-" + secrets.token_hex(4) + "\nline-two-100%-" + secrets.token_hex(4)
    masker = Masker({"a": value, "b": multi})
    lines = add_mask_commands(masker)
    assert all(line.startswith("::add-mask::") for line in lines)
    assert f"::add-mask::{value}" in lines
    assert f"::add-mask::{base64.b64encode(value.encode()).decode()}" in lines
    first, second = multi.split("\n")
    assert f"::add-mask::{first}" in lines
    assert "::add-mask::" + second.replace("%", "%25") in lines
    assert not any("\n" in line for line in lines)


def test_short_derived_forms_are_not_used() -> None:
    # a three-letter value: masked as itself, but no two-letter base64 fragments
    masker = Masker(["abc"])
    assert masker.mask_text("xx abc yy") == f"xx {MASK} yy"
    assert all(len(f) >= 3 for f in masker.forms())
    assert masker.mask_text("YW and Jj") == "YW and Jj"


def test_scan_finds_a_secret_smuggled_into_the_tree_every_way(make_repo: RepoFactory) -> None:
    value = canary()
    repo = make_repo({"clean.txt": "nothing\n", "old.txt": "bye\n"})
    enc = encodings(value)
    (repo / "plain.txt").write_text(f"token = {value}\n")
    (repo / "deep/dir").mkdir(parents=True)
    (repo / "deep/dir/blob.bin").write_bytes(b"\x00\x01" + enc["base64"].encode() + b"\xff")
    (repo / "config.json").write_text(json.dumps({"k": value}))
    (repo / "hex.txt").write_text(enc["HEX"])
    (repo / "url.txt").write_text("https://x.example/?k=" + enc["url"])
    # a file named after the key, and a link whose target is the key (git stores the target)
    name_form = enc["hex"]
    (repo / f"note-{name_form}.txt").write_text("innocent\n")
    (repo / "link").symlink_to(enc["base64url"])
    (repo / "old.txt").unlink()
    (repo / "clean.txt").write_text("still nothing\n")
    changed = [
        entry[3:]
        for entry in git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all").split(
            "\0"
        )
        if entry
    ]
    hits = scan_files(Masker({"openai": value}), repo, changed)
    found = {(h.path, h.where) for h in hits}
    assert found == {
        ("plain.txt", "content"),
        ("deep/dir/blob.bin", "content"),
        ("config.json", "content"),
        ("hex.txt", "content"),
        ("url.txt", "content"),
        (f"note-{name_form}.txt", "file name"),
        ("link", "link target"),
    }
    assert all(h.name == "openai" for h in hits)
    assert value not in repr(hits)
    assert scan_files(Masker([]), repo, changed) == []


def test_a_base64_value_at_the_end_of_a_longer_text_leaves_no_characters_of_its_own() -> None:
    value = canary()
    masker = Masker([value])
    for prefix in (b"user:", b"u:", b"ab:"):
        blob = base64.b64encode(prefix + value.encode())
        masked = masker.mask_bytes(b"Basic " + blob)
        # what stays is only the characters the prefix's bits fix; its padding goes with it
        kept = masked.removeprefix(b"Basic ").split(b"***")
        assert kept[1] == b"", masked
        assert len(kept[0]) <= -(-len(prefix) * 8 // 6), masked


def test_percent_encoded_twice_and_lower_case_path_escapes_are_masked() -> None:
    import urllib.parse

    value = canary()
    masker = Masker([value])
    once = urllib.parse.quote(value, safe="")
    for text in (
        urllib.parse.quote(once, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(value)),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote_plus(value)),
    ):
        assert masker.mask_text(f"next={text}&x=1") == "next=***&x=1", text


def test_a_longer_form_arriving_in_two_chunks_is_masked_whole() -> None:
    """A shorter form complete in the first chunk must wait for a longer one that may follow."""
    value = canary()
    masker = Masker([value])
    blob = base64.b64encode(value.encode())
    whole = masker.mask_bytes(b"[" + blob + b"]")
    assert whole == b"[***]"
    for cut in range(1, len(blob) + 2):
        data = b"[" + blob + b"]"
        stream = masker.stream()
        out = stream.feed(data[:cut]) + stream.feed(data[cut:]) + stream.flush()
        assert out == whole, cut


def test_a_secret_in_another_letter_case_is_still_masked_and_found() -> None:
    value = canary()
    masker = Masker({"openai": value})
    assert masker.mask_text(f"KEY {value.upper()} key {value.lower()}") == "KEY *** key ***"
    hex_upper = value.encode().hex().upper().encode()
    assert masker.mask_bytes(b"dump " + hex_upper) == b"dump ***"
    [hit] = masker.find(value.upper())
    assert (hit.name, hit.form) == ("openai", "plain, letter case changed")
    [exact] = masker.find(hex_upper)
    assert exact.form == "hex (upper-case)"
    stream = masker.stream()
    shouted = f"error: {value.upper()}\n".encode()
    out = stream.feed(shouted[:12]) + stream.feed(shouted[12:]) + stream.flush()
    assert out == b"error: ***\n"


def test_json_that_escapes_html_characters_is_masked() -> None:
    value = f"sk-{secrets.token_hex(8)}<&>{secrets.token_hex(4)}"
    go_style = (
        json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    assert Masker([value]).mask_text(f'{{"key": {go_style}}}') == '{"key": "***"}'


def test_the_prefilter_in_use_is_the_one_asked_for(prefilter_kind: str) -> None:
    masker = Masker([canary()])
    assert masker._prefilter is None  # nothing built before the first scan
    assert not masker.may_contain(b"clean")
    expected = {
        "hyperscan": prefilter.HyperscanPrefilter,
        "substring": prefilter.SubstringPrefilter,
    }
    assert isinstance(masker._prefilter, expected[prefilter_kind])


def test_the_prefilter_sees_every_form_in_any_case_anywhere_in_a_large_chunk() -> None:
    rng = random.Random(secrets.randbits(32))
    value = canary()
    masker = Masker([value])
    filler = bytes(rng.randrange(256) for _ in range(4096)) * 64
    assert not masker.may_contain(filler)
    for form in secret_forms(value).values():
        for variant in (form, form.upper(), form.swapcase()):
            at = rng.randrange(len(filler))
            data = filler[:at] + variant + filler[at:]
            assert masker.may_contain(data), form
            assert masker.may_contain(data[at:])
            assert masker.may_contain(data[: at + len(variant)])
            # one byte short of the whole form: not this one (a shorter form may still be there)
            short = data[at + 1 : at + len(variant)]
            assert masker.may_contain(short) == masker.contains_secret(short)


def test_a_value_with_nul_and_non_ascii_bytes_is_found() -> None:
    value = "k\x00é-" + secrets.token_hex(8)
    masker = Masker([value])
    data = b"noise " + value.encode() + b" more"
    assert masker.may_contain(data)
    assert masker.mask_bytes(data) == b"noise *** more"
    stream = masker.stream()
    out = b"".join(stream.feed(data[i : i + 3]) for i in range(0, len(data), 3)) + stream.flush()
    assert out == b"noise *** more"


def test_a_long_value_is_found_next_to_a_short_one() -> None:
    """A PEM-sized value's forms are too long for Hyperscan: they are searched the plain way."""
    pem = "-----BEGIN KEY-----\n" + base64.encodebytes(secrets.token_bytes(3000)).decode()
    short = canary()
    masker = Masker([pem, short])
    for value in (pem, short):
        data = b"<" + value.encode().swapcase() + b">"
        assert masker.may_contain(data)
        stream = masker.stream()
        out = b"".join(stream.feed(data[i : i + 999]) for i in range(0, len(data), 999))
        assert out + stream.flush() == b"<***>"
    assert not masker.may_contain(b"clean " * 1000)
