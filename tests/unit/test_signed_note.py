"""C2SP signed-note and tlog-checkpoint: the published vectors and the spec's refusals.

Vectors: golang.org/x/mod sumdb/note/note_test.go (github.com/golang/mod: PeterNeumann and
EnochRoot keys, the signed "cryptography" note, the malformed messages) and the examples of
c2sp.org/signed-note (example.com/foo) and c2sp.org/tlog-checkpoint (example.com/behind-the-sofa).
"""

from __future__ import annotations

import base64

import pytest

from eventstore.audit_chain.merkle import EMPTY_ROOT
from eventstore.audit_chain.note import (
    Checkpoint,
    InvalidSignatureError,
    MalformedNoteError,
    NoteError,
    NoteSigner,
    UnverifiedNoteError,
    VerifierKey,
    is_valid_key_name,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
# The Go test's signer key "PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)>": its seed.
PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
ENOCH_SIG64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
PETER_SIG = f"\u2014 PeterNeumann {PETER_SIG64}\n"
ENOCH_SIG = f"\u2014 EnochRoot {ENOCH_SIG64}\n"

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)

peter = VerifierKey.parse(PETER_VKEY)
enoch = VerifierKey.parse(ENOCH_VKEY)
signer = NoteSigner("PeterNeumann", PETER_SEED)


# ---- Keys.


def test_verifier_keys_parse_and_encode_back() -> None:
    for vkey in (PETER_VKEY, ENOCH_VKEY, C2SP_VKEY):
        assert VerifierKey.parse(vkey).encode() == vkey
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3") == key_id("PeterNeumann", peter.public_key)


def test_the_signer_key_of_the_go_vectors_gives_its_verifier_key() -> None:
    assert signer.verifier_key == peter
    assert signer.verifier_key.encode() == PETER_VKEY


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    # note_test.go TestNewVerifier: every proper substring and every byte plus one.
    manglings = {PETER_VKEY[i:j] for i in range(len(PETER_VKEY)) for j in range(i + 1, len(PETER_VKEY) + 1)}
    manglings |= {PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :] for i, c in enumerate(PETER_VKEY)}
    manglings.discard(PETER_VKEY)
    for mangled in manglings:
        with pytest.raises(ValueError):
            VerifierKey.parse(mangled)


@pytest.mark.parametrize(
    "vkey",
    [
        # wrong key length, with the key ID adjusted to match
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        # unknown algorithm, with the key ID adjusted to match
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_verifier_keys_of_another_kind_are_refused(vkey: str) -> None:
    with pytest.raises(ValueError):
        VerifierKey.parse(vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb", "a\rb"])
def test_key_names_have_no_spaces_pluses_or_control_characters(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(ValueError):
        NoteSigner(name, PETER_SEED)


def test_key_names_may_be_schema_less_urls() -> None:
    assert is_valid_key_name("ledgerline/db.example.com")
    assert is_valid_key_name("example.com/behind-the-sofa")


# ---- Signing and opening notes.


def test_signing_reproduces_the_go_vector() -> None:
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG


def test_a_note_opens_with_one_trusted_key_and_keeps_others_unverified() -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert note.text == TEXT
    assert [s.name for s in note.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id.hex()) for s in note.unverified] == [("EnochRoot", "af0cfe78")]
    both = open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [peter, enoch])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"] and not both.unverified


def test_the_c2sp_example_note_verifies() -> None:
    note = open_note(C2SP_NOTE, [VerifierKey.parse(C2SP_VKEY)])
    assert note.text == "This is an example message.\n"


def test_a_note_without_a_trusted_signature_is_refused() -> None:
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(UnverifiedNoteError):
        open_note(C2SP_NOTE, [peter, enoch])


def test_a_key_matches_only_by_name_and_key_id_together() -> None:
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")  # peter's ID under another name
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + renamed, [peter])
    other_id = PETER_SIG.replace("x08g", "xxxx")  # peter's name, another key ID
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + other_id, [peter])


def test_a_trusted_key_whose_signature_fails_rejects_the_note() -> None:
    broken = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(InvalidSignatureError):
        open_note(TEXT + "\n" + broken, [peter])
    with pytest.raises(InvalidSignatureError):
        open_note(TEXT.replace("answer", "Answer") + "\n" + PETER_SIG, [peter])
    with pytest.raises(InvalidSignatureError):  # a blank line more is another text
        open_note(TEXT + "\n\n" + PETER_SIG, [peter])
    enoch_broken = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    with pytest.raises(InvalidSignatureError):  # even next to a good one
        open_note(TEXT + "\n" + PETER_SIG + enoch_broken, [peter, enoch])


def test_repeated_signatures_are_reported_once() -> None:
    enoch_broken = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_broken, [peter])
    assert len(note.verified) == 1
    assert len(note.unverified) == 2


def test_more_than_a_hundred_signatures_is_malformed() -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * 100, [peter])
    for known in ([peter], []):
        with pytest.raises(MalformedNoteError):
            open_note(TEXT + "\n" + PETER_SIG * 101, known)


@pytest.mark.parametrize(
    "message",
    [  # note_test.go TestOpen's bad messages, then the spec's other rules
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        TEXT + "\n" + "\u2014 Bad Name " + PETER_SIG64,
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
        TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
        TEXT + "\n" + "\u2014 PeterNeumann\n",
        TEXT + "\n" + "\u2014 PeterNeumann x08g\n",  # shorter than a key ID and one byte
        TEXT + "\n" + "\u2014 PeterNeumann x08go/ZJ!uBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIu==\n",
        TEXT + "\n" + "\u2014 Peter+Neumann " + PETER_SIG64 + "\n",
        "x" * (1 << 20) + "\n\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,
    ],
)
def test_malformed_notes_are_refused(message: str | bytes) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(message, [peter])


def test_texts_that_cannot_be_notes_are_not_signed() -> None:
    for text in ("abc", "", "a\rb\n", "tab\there\n"):
        with pytest.raises(MalformedNoteError):
            sign_note(text, [signer])
    with pytest.raises(MalformedNoteError):
        sign_note(TEXT, [])


def test_a_text_with_blank_lines_round_trips() -> None:
    text = "first\n\nthird\n\n"
    assert open_note(sign_note(text, [signer]), [peter]).text == text


# ---- Checkpoints.


def test_the_c2sp_checkpoint_example_parses() -> None:
    note = parse_note(C2SP_CHECKPOINT)
    checkpoint = Checkpoint.parse(note.text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == note.text
    assert [s.name for s in note.signatures] == ["example.com/behind-the-sofa"]
    with pytest.raises(UnverifiedNoteError):  # its key is not one we trust
        open_checkpoint(C2SP_CHECKPOINT, [peter])


def test_a_signed_checkpoint_opens_with_its_key() -> None:
    logger = NoteSigner("ledgerline/test", PETER_SEED)
    checkpoint = Checkpoint("ledgerline/test", 8, bytes(range(32)), ("extension line",))
    signed = sign_checkpoint(checkpoint, [logger])
    assert signed.startswith(
        "ledgerline/test\n8\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nextension line\n\n"
    )
    assert signed.endswith("\n") and "\u2014 ledgerline/test " in signed
    assert open_checkpoint(signed, [logger.verifier_key], origin="ledgerline/test") == checkpoint
    with pytest.raises(NoteError):
        open_checkpoint(signed, [logger.verifier_key], origin="ledgerline/other")
    with pytest.raises(InvalidSignatureError):
        open_checkpoint(signed.replace("\n8\n", "\n9\n"), [logger.verifier_key])


def test_an_old_key_keeps_verifying_its_checkpoints_after_rotation() -> None:
    old = NoteSigner("ledgerline/test", PETER_SEED)
    new = NoteSigner("ledgerline/test", bytes(range(32)))
    before = sign_checkpoint(Checkpoint("ledgerline/test", 0, EMPTY_ROOT), [old])
    after = sign_checkpoint(Checkpoint("ledgerline/test", 5, EMPTY_ROOT), [new])
    trusted = [old.verifier_key, new.verifier_key]
    assert open_checkpoint(before, trusted).size == 0
    assert open_checkpoint(after, trusted).size == 5
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(before, [new.verifier_key])
    both = sign_checkpoint(Checkpoint("ledgerline/test", 5, EMPTY_ROOT), [old, new])
    assert open_checkpoint(both, [new.verifier_key]).size == 5


@pytest.mark.parametrize(
    "text",
    [
        "origin\n020852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # leading zero
        "origin\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n+1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n1 \nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # 2**64
        "origin\n\u0661\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # not ASCII digits
        "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",  # non-canonical base64
        "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n",  # 31 bytes
        "origin\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n",  # base64url
        "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",  # no final newline
        "origin\n1\n",
        "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # empty origin
        "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\nextension\n",  # empty extension
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(MalformedNoteError):
        Checkpoint.parse(text)


def test_the_empty_tree_has_a_checkpoint() -> None:
    checkpoint = Checkpoint.parse("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
    assert (checkpoint.size, checkpoint.root_hash) == (0, EMPTY_ROOT)


def test_checkpoints_that_cannot_be_written_are_refused() -> None:
    for origin, size, root, extensions in [
        ("", 1, EMPTY_ROOT, ()),
        ("two\nlines", 1, EMPTY_ROOT, ()),
        ("origin", -1, EMPTY_ROOT, ()),
        ("origin", 1, b"short", ()),
        ("origin", 1, EMPTY_ROOT, ("",)),
    ]:
        with pytest.raises(ValueError):
            Checkpoint(origin, size, root, extensions)
