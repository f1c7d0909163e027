"""embedzk.zkwire, ZooKeeper's client wire format: every record round-trips, the bytes are those ZooKeeper's jute
archives write (checked by hand and against kazoo's own serializers), the field lists are those of
``zookeeper.jute``, and no bytes make a decoder raise anything but DecodeError.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedzk import errors, model
from embedzk.errors import DecodeError
from embedzk.zkwire import codes, frames, jute, records
from embedzk.zkwire.codes import ErrorCode, OpCode
from embedzk.zkwire.frames import (
    REQUEST_BODIES,
    RESPONSE_BODIES,
    FrameDecoder,
    FrameLengthError,
    Reply,
    Request,
    decode_connect_request,
    decode_connect_response,
    decode_reply,
    decode_request,
    encode_connect_request,
    encode_connect_response,
    encode_notification,
    encode_reply,
    encode_request,
    frame,
)
from embedzk.zkwire.jute import (
    INT_MAX,
    INT_MIN,
    JUTE_MAX_BUFFER,
    LONG_MAX,
    LONG_MIN,
    JuteReader,
    JuteRecord,
    JuteType,
    RecordType,
    VectorType,
)
from embedzk.zkwire.records import (
    ACL,
    AuthPacket,
    CheckResult,
    CheckVersionRequest,
    ConnectRequest,
    ConnectResponse,
    Create2Response,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    DeleteResult,
    ErrorResponse,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    GetDataResponse,
    Id,
    MultiOp,
    MultiRequest,
    MultiResponse,
    ReplyHeader,
    RequestHeader,
    SetDataRequest,
    SetDataResponse,
    Stat,
    WatcherEvent,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RECORD_CLASSES: list[type[JuteRecord]] = sorted(
    (
        obj
        for obj in vars(records).values()
        if isinstance(obj, type) and issubclass(obj, JuteRecord) and obj.__module__ == records.__name__
    ),
    key=lambda cls: cls.__name__,
)

# -- strategies, generated from each record's jute field types ----------------------------------------------------

PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(INT_MIN, INT_MAX),
    "long": st.integers(LONG_MIN, LONG_MAX),
    "boolean": st.booleans(),
    "buffer": st.none() | st.binary(max_size=40),
    "ustring": st.none() | st.text(max_size=16),
}


def for_type(jtype: JuteType[Any]) -> st.SearchStrategy[Any]:
    """Values of a jute type."""
    if isinstance(jtype, VectorType):
        return st.none() | st.lists(for_type(jtype.element), max_size=4).map(tuple)
    if isinstance(jtype, RecordType):
        return for_record(jtype.record_class)
    return PRIMITIVES[jtype.name]


def multi_ops() -> st.SearchStrategy[tuple[MultiOp, ...]]:
    """The operations of a multi (all writes) or a multiRead (all reads), never mixed."""
    write_ops = sorted(set(records.MULTI_OP_REQUESTS) - records.READ_OPS)
    read_ops = sorted(records.READ_OPS)

    def ops_of(kinds: list[int]) -> st.SearchStrategy[tuple[MultiOp, ...]]:
        op = st.sampled_from(kinds).flatmap(
            lambda code: for_record(records.MULTI_OP_REQUESTS[code]).map(lambda req: MultiOp(code, req))
        )
        return st.lists(op, max_size=4).map(tuple)

    return ops_of(write_ops) | ops_of(read_ops)


MULTI_RESULT_CLASSES = sorted(records.MULTI_RESULT_TYPES, key=lambda cls: cls.__name__)

SPECIAL: dict[type[JuteRecord], Callable[[], st.SearchStrategy[Any]]] = {
    ConnectRequest: lambda: st.builds(
        ConnectRequest,
        PRIMITIVES["int"],
        PRIMITIVES["long"],
        PRIMITIVES["int"],
        PRIMITIVES["long"],
        PRIMITIVES["buffer"],
        st.none() | st.booleans(),
    ),
    ConnectResponse: lambda: st.builds(
        ConnectResponse,
        PRIMITIVES["int"],
        PRIMITIVES["int"],
        PRIMITIVES["long"],
        PRIMITIVES["buffer"],
        st.none() | st.booleans(),
    ),
    MultiRequest: lambda: multi_ops().map(MultiRequest),
    MultiResponse: lambda: st.lists(
        st.sampled_from(MULTI_RESULT_CLASSES).flatmap(for_record), max_size=4
    ).map(lambda results: MultiResponse(tuple(results))),
}


def for_record(cls: type[JuteRecord]) -> st.SearchStrategy[Any]:
    """Records of a class."""
    if cls in SPECIAL:
        return SPECIAL[cls]()
    return st.builds(cls, *[for_type(jtype) for _, jtype in cls._jute_fields])


def requests() -> st.SearchStrategy[Request]:
    """Every request a client may send."""

    def of(opcode: int) -> st.SearchStrategy[Request]:
        body_class = REQUEST_BODIES[opcode]
        header = st.builds(RequestHeader, PRIMITIVES["int"], st.just(opcode))
        if body_class is None:
            return st.builds(Request, header, st.none())
        body = for_record(body_class)
        if body_class is MultiRequest:
            reads = opcode == OpCode.MULTI_READ
            body = multi_ops().filter(lambda ops: all((op.type in records.READ_OPS) == reads for op in ops)).map(
                MultiRequest
            )
        return st.builds(Request, header, body)

    return st.sampled_from(sorted(REQUEST_BODIES)).flatmap(of)


def replies() -> st.SearchStrategy[tuple[int, Reply]]:
    """Every successful reply a server may send, with the opcode of the request it answers."""

    def of(opcode: int) -> st.SearchStrategy[tuple[int, Reply]]:
        body_class = RESPONSE_BODIES[opcode]
        xid = st.integers(0, INT_MAX)
        header = st.builds(ReplyHeader, xid, PRIMITIVES["long"], st.just(0))
        body = st.none() if body_class is None else for_record(body_class)
        return st.tuples(st.just(opcode), st.builds(Reply, header, body))

    return st.sampled_from(sorted(RESPONSE_BODIES)).flatmap(of)


# -- the field lists are zookeeper.jute's -------------------------------------------------------------------------

# Transcribed from zookeeper-jute/src/main/resources/zookeeper.jute (and, for ClientInfo and WhoAmIResponse, which
# came with 3.9, from the generated classes' documented constructors), in wire order.
ZOOKEEPER_JUTE = {
    "Id": "ustring scheme; ustring id",
    "ACL": "int perms; Id id",
    "Stat": "long czxid; long mzxid; long ctime; long mtime; int version; int cversion; int aversion; "
    "long ephemeralOwner; int dataLength; int numChildren; long pzxid",
    "ClientInfo": "ustring authScheme; ustring user",
    "ConnectRequest": "int protocolVersion; long lastZxidSeen; int timeOut; long sessionId; buffer passwd",
    "ConnectResponse": "int protocolVersion; int timeOut; long sessionId; buffer passwd",
    "SetWatches": "long relativeZxid; vector<ustring> dataWatches; vector<ustring> existWatches; "
    "vector<ustring> childWatches",
    "SetWatches2": "long relativeZxid; vector<ustring> dataWatches; vector<ustring> existWatches; "
    "vector<ustring> childWatches; vector<ustring> persistentWatches; vector<ustring> persistentRecursiveWatches",
    "RequestHeader": "int xid; int type",
    "MultiHeader": "int type; boolean done; int err",
    "AuthPacket": "int type; ustring scheme; buffer auth",
    "ReplyHeader": "int xid; long zxid; int err",
    "GetDataRequest": "ustring path; boolean watch",
    "SetDataRequest": "ustring path; buffer data; int version",
    "ReconfigRequest": "ustring joiningServers; ustring leavingServers; ustring newMembers; long curConfigId",
    "SetDataResponse": "Stat stat",
    "GetSASLRequest": "buffer token",
    "SetSASLRequest": "buffer token",
    "SetSASLResponse": "buffer token",
    "CreateRequest": "ustring path; buffer data; vector<ACL> acl; int flags",
    "CreateTTLRequest": "ustring path; buffer data; vector<ACL> acl; int flags; long ttl",
    "DeleteRequest": "ustring path; int version",
    "GetChildrenRequest": "ustring path; boolean watch",
    "GetAllChildrenNumberRequest": "ustring path",
    "GetChildren2Request": "ustring path; boolean watch",
    "CheckVersionRequest": "ustring path; int version",
    "SyncRequest": "ustring path",
    "SyncResponse": "ustring path",
    "GetACLRequest": "ustring path",
    "SetACLRequest": "ustring path; vector<ACL> acl; int version",
    "SetACLResponse": "Stat stat",
    "AddWatchRequest": "ustring path; int mode",
    "WatcherEvent": "int type; int state; ustring path",
    "ErrorResponse": "int err",
    "CreateResponse": "ustring path",
    "Create2Response": "ustring path; Stat stat",
    "ExistsRequest": "ustring path; boolean watch",
    "ExistsResponse": "Stat stat",
    "GetDataResponse": "buffer data; Stat stat",
    "GetChildrenResponse": "vector<ustring> children",
    "GetAllChildrenNumberResponse": "int totalNumber",
    "GetChildren2Response": "vector<ustring> children; Stat stat",
    "GetACLResponse": "vector<ACL> acl; Stat stat",
    "CheckWatchesRequest": "ustring path; int type",
    "RemoveWatchesRequest": "ustring path; int type",
    "GetEphemeralsRequest": "ustring prefixPath",
    "GetEphemeralsResponse": "vector<ustring> ephemerals",
    "WhoAmIResponse": "vector<ClientInfo> clientInfo",
}

# Records whose wire form is not a jute class of their own.
NOT_IN_JUTE = {"MultiRequest", "MultiResponse", "DeleteResult", "CheckResult"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_every_record_of_zookeeper_jute_is_here_with_its_fields_in_order() -> None:
    defined = {cls.__name__ for cls in RECORD_CLASSES}
    assert defined - NOT_IN_JUTE == set(ZOOKEEPER_JUTE)
    for cls in RECORD_CLASSES:
        if cls.__name__ in NOT_IN_JUTE:
            continue
        ours = "; ".join(f"{jtype.name} {_camel(name)}" for name, jtype in cls._jute_fields)
        assert ours == ZOOKEEPER_JUTE[cls.__name__], cls.__name__


def test_each_records_dataclass_fields_are_its_jute_fields() -> None:
    for cls in RECORD_CLASSES:
        names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
        jute_names = [name for name, _ in cls._jute_fields]
        if cls in (ConnectRequest, ConnectResponse):
            jute_names.append("read_only")
        if cls is MultiRequest:
            jute_names = ["ops"]
        if cls is MultiResponse:
            jute_names = ["results"]
        assert names == jute_names, cls.__name__
        assert cls.__dataclass_params__.frozen, cls.__name__  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls.__name__


def test_every_public_name_has_a_docstring() -> None:
    import embedzk.zkwire

    for module in (embedzk.zkwire, jute, records, codes, frames):
        assert module.__doc__, module.__name__
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and aliases, documented by a comment
            assert (obj.__doc__ or "").strip(), f"{module.__name__}.{name}"
            for member_name, member in vars(obj).items() if inspect.isclass(obj) else ():
                function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                if not member_name.startswith("_") and (inspect.isfunction(function) or isinstance(function, property)):
                    assert (function.__doc__ or "").strip(), f"{module.__name__}.{name}.{member_name}"


# -- round trips --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
@FAST
@given(data=st.data())
def test_every_record_round_trips(cls: type[JuteRecord], data: st.DataObject) -> None:
    value = data.draw(for_record(cls))
    encoded = value.encode()
    assert cls.decode(encoded) == value
    if cls not in (ConnectRequest, ConnectResponse):  # whose optional trailer would read the next byte
        reader = JuteReader(encoded + b"tail")
        assert cls.read(reader) == value and reader.remaining == 4


@FAST
@given(request=requests())
def test_every_request_round_trips_through_a_frame(request: Request) -> None:
    packet = encode_request(request.header, request.body)
    (received,) = list(FrameDecoder().feed(packet))
    assert decode_request(received) == request


@FAST
@given(opcode_and_reply=replies())
def test_every_reply_round_trips_through_a_frame(opcode_and_reply: tuple[int, Reply]) -> None:
    opcode, reply = opcode_and_reply
    (received,) = list(FrameDecoder().feed(encode_reply(reply.header, reply.body)))
    assert decode_reply(received, opcode) == reply


@FAST
@given(event=for_record(WatcherEvent), zxid=PRIMITIVES["long"])
def test_a_notification_round_trips_whatever_the_pending_opcode(event: WatcherEvent, zxid: int) -> None:
    (received,) = list(FrameDecoder().feed(encode_notification(event, zxid)))
    assert decode_reply(received, None) == Reply(ReplyHeader(-1, zxid, 0), event)
    assert decode_reply(received, OpCode.GET_DATA) == Reply(ReplyHeader(-1, zxid, 0), event)


@FAST
@given(connect=for_record(ConnectRequest), response=for_record(ConnectResponse))
def test_the_handshake_round_trips(connect: ConnectRequest, response: ConnectResponse) -> None:
    decoder = FrameDecoder()
    assert [decode_connect_request(p) for p in decoder.feed(encode_connect_request(connect))] == [connect]
    assert [decode_connect_response(p) for p in decoder.feed(encode_connect_response(response))] == [response]


def test_an_error_reply_has_no_body_and_its_trailing_bytes_are_ignored() -> None:
    packet = encode_reply(ReplyHeader(5, 9, ErrorCode.NONODE))[4:]
    assert decode_reply(packet, OpCode.GET_DATA) == Reply(ReplyHeader(5, 9, -101), None)
    assert decode_reply(packet + b"junk", OpCode.GET_DATA).body is None


def test_replies_to_ping_auth_and_set_watches_have_no_body() -> None:
    for xid in (codes.PING_XID, codes.AUTH_XID, codes.SET_WATCHES_XID):
        packet = encode_reply(ReplyHeader(xid, 12, 0))[4:]
        assert decode_reply(packet, None) == Reply(ReplyHeader(xid, 12, 0), None)


def test_stat_converts_to_and_from_the_models_stat() -> None:
    stat = model.Stat(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    assert Stat.from_model(stat).to_model() == stat
    assert dataclasses.astuple(Stat.from_model(stat)) == dataclasses.astuple(stat)


# -- byte-exact encodings, computed by hand -----------------------------------------------------------------------


def h(text: str) -> bytes:
    """Bytes from hex with spaces."""
    return bytes.fromhex(text.replace(" ", ""))


CONNECT_35 = h(
    "00000000"  # protocolVersion 0
    "00000001 00000005"  # lastZxidSeen 0x100000005
    "00007530"  # timeOut 30000
    "12345678 90abcdef"  # sessionId
    "00000010 000102030405060708090a0b0c0d0e0f"  # passwd, 16 bytes
    "01"  # readOnly true
)


def test_a_connect_request_as_a_35_client_sends_it() -> None:
    request = ConnectRequest(0, 0x100000005, 30000, 0x1234567890ABCDEF, bytes(range(16)), True)
    assert request.encode() == CONNECT_35
    assert encode_connect_request(request) == h("0000002d") + CONNECT_35
    assert decode_connect_request(CONNECT_35) == request


def test_a_34_connect_request_without_read_only_decodes() -> None:
    old = CONNECT_35[:-1]
    assert decode_connect_request(old) == ConnectRequest(0, 0x100000005, 30000, 0x1234567890ABCDEF, bytes(range(16)))
    assert decode_connect_request(old).read_only is None
    assert ConnectRequest(0, 0x100000005, 30000, 0x1234567890ABCDEF, bytes(range(16))).encode() == old
    with pytest.raises(DecodeError, match="ConnectRequest: 1 unexpected bytes"):
        decode_connect_request(CONNECT_35 + b"\x00")


def test_a_connect_response_with_and_without_read_only() -> None:
    body = h("00000000 00007530 12345678 90abcdef 00000010") + bytes(16)
    assert decode_connect_response(body) == ConnectResponse(0, 30000, 0x1234567890ABCDEF, bytes(16))
    assert decode_connect_response(body + b"\x00") == ConnectResponse(0, 30000, 0x1234567890ABCDEF, bytes(16), False)
    assert encode_connect_response(ConnectResponse(0, 30000, 0x1234567890ABCDEF, bytes(16), False)) == (
        h("00000025") + body + b"\x00"
    )


def test_a_reply_header() -> None:
    assert ReplyHeader(7, 0x200000003, -101).encode() == h("00000007 00000002 00000003 ffffff9b")
    assert ReplyHeader.decode(h("fffffffe 00000000 00000000 00000000")) == ReplyHeader(-2, 0, 0)


def test_a_create_request_packet() -> None:
    body = CreateRequest("/a", b"hi", (ACL(31, Id("world", "anyone")),), 3)
    expected = h(
        "0000000b 00000001"  # RequestHeader: xid 11, create
        "00000002 2f61"  # path "/a"
        "00000002 6869"  # data "hi"
        "00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65"  # one ACL: 31, world, anyone
        "00000003"  # flags: ephemeral sequential
    )
    assert encode_request(RequestHeader(11, OpCode.CREATE), body) == struct.pack(">i", len(expected)) + expected
    assert decode_request(expected) == Request(RequestHeader(11, 1), body)


def test_nulls_are_minus_one() -> None:
    assert CreateRequest(None, None, None, 0).encode() == h("ffffffff ffffffff ffffffff 00000000")
    assert CreateRequest.decode(h("ffffffff ffffffff ffffffff 00000000")) == CreateRequest(None, None, None, 0)


def test_a_notification() -> None:
    assert encode_notification(WatcherEvent(3, 3, "/a")) == h(
        "0000001e"  # frame length 30
        "ffffffff ffffffff ffffffff 00000000"  # ReplyHeader: xid -1, zxid -1, err 0
        "00000003 00000003 00000002 2f61"  # NodeDataChanged, SyncConnected, "/a"
    )


def test_a_multi_response_with_a_failure() -> None:
    response = MultiResponse((ErrorResponse(0), ErrorResponse(-101), ErrorResponse(-2)))
    assert response.encode() == h(
        "ffffffff 00 00000000 00000000"  # rolled back
        "ffffffff 00 ffffff9b ffffff9b"  # NONODE
        "ffffffff 00 fffffffe fffffffe"  # RUNTIMEINCONSISTENCY
        "ffffffff 01 ffffffff"  # done
    )
    ok = MultiResponse((CreateResponse("/a"), DeleteResult(), CheckResult(), SetDataResponse(Stat(*range(11)))))
    assert ok.encode()[:20] == h("00000001 00 00000000 00000002 2f61 00000002 00")
    assert MultiResponse.decode(ok.encode()) == ok


def test_a_multi_request() -> None:
    request = MultiRequest((MultiOp(OpCode.CHECK, CheckVersionRequest("/a", 4)), MultiOp(2, DeleteRequest("/b", -1))))
    assert request.encode() == h(
        "0000000d 00 ffffffff 00000002 2f61 00000004"  # check /a version 4
        "00000002 00 ffffffff 00000002 2f62 ffffffff"  # delete /b any version
        "ffffffff 01 ffffffff"  # done
    )


def test_a_stat() -> None:
    stat = Stat(1, 2, 3, 4, 5, 6, 7, -8, 9, 10, 11)
    assert stat.encode() == h(
        "0000000000000001 0000000000000002 0000000000000003 0000000000000004"
        "00000005 00000006 00000007 fffffffffffffff8 00000009 0000000a 000000000000000b"
    )
    assert len(stat.encode()) == Stat.min_size() == 68


def test_java_encoded_surrogate_pairs_read_as_one_character() -> None:
    # Java's writer encodes U+1F600 as its two UTF-16 surrogates, three bytes each.
    assert JuteReader(h("00000006 eda0bd edb880")).read_ustring("x") == "\U0001f600"
    assert records.SyncRequest("/\U0001f600").encode() == h("00000005 2f f09f9880")
    with pytest.raises(DecodeError, match="invalid UTF-8"):
        JuteReader(h("00000003 eda0bd")).read_ustring("x")  # a lone surrogate


def test_any_non_zero_byte_reads_as_true() -> None:
    assert ExistsRequest.decode(h("00000001 2f 02")) == ExistsRequest("/", True)


# -- errors: clear, and only DecodeError --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (h("0000"), r"CreateRequest\.path: truncated input: 4 bytes needed, 2 left at offset 0"),
        (h("00000005 2f61"), r"CreateRequest\.path: length 5 runs past the end of the input \(2 bytes left\)"),
        (h("fffffffe"), r"CreateRequest\.path: negative length -2 at offset 0"),
        (h("00100000"), r"CreateRequest\.path: length 1048576 is over the limit of 1048575 bytes"),
        (h("00000001 ff"), r"CreateRequest\.path: invalid UTF-8"),
        (h("00000001 2f ffffffff 7fffffff"), r"CreateRequest\.acl: count 2147483647 of elements of at least 12"),
        (h("00000001 2f ffffffff fffffff0"), r"CreateRequest\.acl: negative count -16 at offset 9"),
        (
            h("00000001 2f ffffffff 00000001 0000001f 00000009 776f726c64"),
            r"CreateRequest\.acl\[0\] -> ACL\.id -> Id\.scheme: length 9 runs past the end .* at offset 17",
        ),
        (h("00000001 2f ffffffff 00000000 00000000 00"), r"CreateRequest: 1 unexpected bytes after the end"),
    ],
)
def test_decode_errors_name_the_field_and_the_offset(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        CreateRequest.decode(data)


def test_an_unknown_opcode_is_named() -> None:
    with pytest.raises(DecodeError, match=r"unknown opcode 42 \(xid 7\)"):
        decode_request(h("00000007 0000002a"))
    with pytest.raises(DecodeError, match=r"opcode 20 \(deleteContainer\) is not a request a client sends"):
        decode_request(h("00000007 00000014 00000001 2f"))
    with pytest.raises(DecodeError, match=r"request header -> RequestHeader\.type: truncated"):
        decode_request(h("00000007"))
    with pytest.raises(DecodeError, match=r"getData request \(xid 7\) -> GetDataRequest\.watch: truncated"):
        decode_request(h("00000007 00000004 00000001 2f"))


def test_a_multi_refuses_an_operation_it_cannot_hold_and_mixed_kinds() -> None:
    with pytest.raises(DecodeError, match=r"MultiRequest\.ops\[0\]: opcode 3 cannot be an operation of a multi"):
        MultiRequest.decode(h("00000003 00 ffffffff 00000001 2f 00 ffffffff 01 ffffffff"))
    mixed = MultiRequest((MultiOp(OpCode.DELETE, DeleteRequest("/a", -1)),)).encode()[:-9] + MultiRequest(
        (MultiOp(OpCode.GET_DATA, GetDataRequest("/a", False)),)
    ).encode()
    with pytest.raises(DecodeError, match=r"MultiRequest\.ops\[1\]: a multi mixes reads and writes"):
        MultiRequest.decode(mixed)
    with pytest.raises(DecodeError, match=r"MultiRequest\.ops\[0\] -> MultiHeader\.done: truncated"):
        MultiRequest.decode(h("00000002"))
    with pytest.raises(DecodeError, match=r"MultiResponse\.results\[0\]: opcode 3 is not a multi result"):
        MultiResponse.decode(h("00000003 00 00000000"))


def test_values_the_wire_cannot_carry_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match=r"DeleteRequest\.version: 2147483648 does not fit a jute int"):
        DeleteRequest("/a", 2**31).encode()
    with pytest.raises(ValueError, match=r"RequestHeader\.xid"):
        RequestHeader(-(2**31) - 1, 1).encode()
    with pytest.raises(ValueError, match=r"SyncRequest\.path: not encodable as UTF-8"):
        records.SyncRequest("\ud800").encode()
    with pytest.raises(TypeError, match=r"ExistsRequest\.watch: a jute boolean must be a bool"):
        ExistsRequest("/a", 1).encode()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes a CreateTTLRequest, not a CreateRequest"):
        MultiOp(OpCode.CREATE_TTL, CreateRequest("/a", b"", (), 0))
    with pytest.raises(ValueError, match="opcode 3 cannot be an operation of a multi"):
        MultiOp(OpCode.EXISTS, GetDataRequest("/a", False))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a getData request takes a GetDataRequest, not ExistsRequest"):
        encode_request(RequestHeader(1, OpCode.GET_DATA), ExistsRequest("/a", False))
    with pytest.raises(ValueError, match="a ping request has no body"):
        encode_request(RequestHeader(-2, OpCode.PING), ExistsRequest("/a", False))


def _only_decode_errors(decode: Callable[[bytes], Any], data: bytes) -> Any:
    """Run a decoder: it returns a value or raises DecodeError, nothing else."""
    try:
        return decode(data)
    except DecodeError:
        return None


def _mutations(data: bytes, rnd: random.Random) -> list[bytes]:
    """Truncations, bit flips, insertions, deletions and spliced lengths of ``data``."""
    out = [data[:cut] for cut in range(len(data))]
    for _ in range(12):
        if not data:
            break
        buf = bytearray(data)
        pos = rnd.randrange(len(buf))
        choice = rnd.randrange(5)
        if choice == 0:
            buf[pos] ^= 1 << rnd.randrange(8)
        elif choice == 1:
            buf[pos] = rnd.randrange(256)
        elif choice == 2:
            del buf[pos : pos + rnd.randrange(1, 6)]
        elif choice == 3:
            buf[pos:pos] = rnd.randbytes(rnd.randrange(1, 6))
        else:
            value = rnd.choice([-1, -2, INT_MIN, INT_MAX, 0, 1, 0x7FFF, JUTE_MAX_BUFFER + 1, rnd.randrange(-9, 2**20)])
            buf[pos : pos + 4] = struct.pack(">i", value)
        out.append(bytes(buf))
    return out


RECORD_DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [(cls.__name__, cls.decode) for cls in RECORD_CLASSES]
PACKET_DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("request", decode_request),
    ("connect request", decode_connect_request),
    ("connect response", decode_connect_response),
    *[
        (f"reply to {codes.op_name(code)}", lambda data, code=code: decode_reply(data, code))
        for code in sorted(RESPONSE_BODIES)
    ],
]


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    for _, decode in RECORD_DECODERS + PACKET_DECODERS:
        _only_decode_errors(decode, data)
    # A request body after a plausible header, for every opcode.
    for opcode in REQUEST_BODIES:
        _only_decode_errors(decode_request, struct.pack(">ii", 1, opcode) + data)
        _only_decode_errors(lambda d: decode_reply(d, opcode), struct.pack(">iqi", 1, 1, 0) + data)


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_mutated_records_raise_only_decode_errors(cls: type[JuteRecord], data: st.DataObject, seed: int) -> None:
    value = data.draw(for_record(cls))
    for mutated in _mutations(value.encode(), random.Random(seed)):
        decoded = _only_decode_errors(cls.decode, mutated)
        if decoded is not None:  # whatever decodes, encodes, and decodes to itself
            assert cls.decode(decoded.encode()) == decoded


@FUZZ
@given(request=requests(), seed=st.integers(0, 2**32))
def test_mutated_request_packets_raise_only_decode_errors(request: Request, seed: int) -> None:
    packet = encode_request(request.header, request.body)[4:]
    for mutated in _mutations(packet, random.Random(seed)):
        decoded = _only_decode_errors(decode_request, mutated)
        if decoded is not None:
            assert decode_request(encode_request(decoded.header, decoded.body)[4:]) == decoded


@FUZZ
@given(opcode_and_reply=replies(), seed=st.integers(0, 2**32))
def test_mutated_reply_packets_raise_only_decode_errors(opcode_and_reply: tuple[int, Reply], seed: int) -> None:
    opcode, reply = opcode_and_reply
    packet = encode_reply(reply.header, reply.body)[4:]
    for mutated in _mutations(packet, random.Random(seed)):
        _only_decode_errors(lambda d: decode_reply(d, opcode), mutated)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=12), max_size=12), max_packet=st.integers(0, 64))
def test_the_frame_decoder_raises_only_frame_length_errors(chunks: list[bytes], max_packet: int) -> None:
    decoder = FrameDecoder(max_packet)
    try:
        for chunk in chunks:
            for packet in decoder.feed(chunk):
                assert len(packet) <= max_packet
    except FrameLengthError as exc:
        assert exc.length < 0 or exc.length > max_packet


# -- framing ------------------------------------------------------------------------------------------------------


@FAST
@given(packets=st.lists(st.binary(max_size=30), max_size=8), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_frames_come_out_whole_however_the_stream_is_cut(packets: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in packets)
    bounds = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    decoder = FrameDecoder()
    received = [p for start, end in zip(bounds, bounds[1:], strict=False) for p in decoder.feed(stream[start:end])]
    assert received == packets
    assert decoder.buffered == 0


def test_a_frame_of_exactly_the_maximum_passes_and_one_byte_more_does_not() -> None:
    decoder = FrameDecoder()
    assert decoder.max_packet == JUTE_MAX_BUFFER == 1048575
    big = bytes(JUTE_MAX_BUFFER)
    assert list(decoder.feed(frame(big))) == [big]
    with pytest.raises(FrameLengthError, match=r"frame length 1048576 \(bytes 00100000\) at stream offset 1048579"):
        list(decoder.feed(frame(big + b"x")))


def test_a_length_is_refused_as_soon_as_it_arrives_and_for_good() -> None:
    decoder = FrameDecoder(max_packet=10)
    assert list(decoder.feed(frame(b"one") + frame(b"two") + h("000000"))) == [b"one", b"two"]
    with pytest.raises(FrameLengthError, match="is over the maximum of 10 bytes") as caught:
        list(decoder.feed(h("0b")))
    assert caught.value.length == 11 and caught.value.prefix == h("0000000b")
    with pytest.raises(FrameLengthError):
        list(decoder.feed(b""))
    with pytest.raises(FrameLengthError, match="-1 .* is negative"):
        list(FrameDecoder().feed(h("ffffffff")))


def test_a_four_letter_word_shows_in_the_refused_prefix() -> None:
    with pytest.raises(FrameLengthError) as caught:
        list(FrameDecoder().feed(b"ruok"))
    assert caught.value.prefix == b"ruok" and isinstance(caught.value, DecodeError)


def test_packets_left_unread_stay_for_the_next_call() -> None:
    decoder = FrameDecoder()
    packets = decoder.feed(frame(b"a") + frame(b"b"))
    assert next(packets) == b"a"
    assert list(decoder.feed(frame(b"c"))) == [b"b", b"c"]


def test_many_small_frames_do_not_pile_up_in_the_buffer() -> None:
    decoder = FrameDecoder()
    for i in range(30000):
        assert list(decoder.feed(frame(i.to_bytes(4, "big")))) == [i.to_bytes(4, "big")]
    assert decoder.buffered == 0 and len(decoder._buf) < 100


# -- codes --------------------------------------------------------------------------------------------------------

OPCODES = (
    "create=1 delete=2 exists=3 getData=4 setData=5 getACL=6 setACL=7 getChildren=8 sync=9 ping=11 getChildren2=12 "
    "check=13 multi=14 create2=15 reconfig=16 checkWatches=17 removeWatches=18 createContainer=19 "
    "deleteContainer=20 createTTL=21 multiRead=22 auth=100 setWatches=101 sasl=102 getEphemerals=103 "
    "getAllChildrenNumber=104 setWatches2=105 addWatch=106 whoAmI=107 createSession=-10 closeSession=-11 error=-1"
)
ERROR_CODES = (
    "OK=0 SYSTEMERROR=-1 RUNTIMEINCONSISTENCY=-2 DATAINCONSISTENCY=-3 CONNECTIONLOSS=-4 MARSHALLINGERROR=-5 "
    "UNIMPLEMENTED=-6 OPERATIONTIMEOUT=-7 BADARGUMENTS=-8 UNKNOWNSESSION=-12 NEWCONFIGNOQUORUM=-13 "
    "RECONFIGINPROGRESS=-14 APIERROR=-100 NONODE=-101 NOAUTH=-102 BADVERSION=-103 NOCHILDRENFOREPHEMERALS=-108 "
    "NODEEXISTS=-110 NOTEMPTY=-111 SESSIONEXPIRED=-112 INVALIDCALLBACK=-113 INVALIDACL=-114 AUTHFAILED=-115 "
    "SESSIONMOVED=-118 NOTREADONLY=-119 EPHEMERALONLOCALSESSION=-120 NOWATCHER=-121 REQUESTTIMEOUT=-122 "
    "RECONFIGDISABLED=-123 SESSIONCLOSEDREQUIRESASLAUTH=-124 QUOTAEXCEEDED=-125 THROTTLEDOP=-127"
)


def _pairs(text: str) -> dict[str, int]:
    return {name: int(value) for name, value in (item.split("=") for item in text.split())}


def test_opcodes_are_zookeepers() -> None:
    expected = _pairs(OPCODES)
    assert {codes.op_name(code): int(code) for code in OpCode if code is not OpCode.NOTIFICATION} == expected
    assert OpCode.NOTIFICATION == 0 and codes.op_name(999) == "unknown opcode 999"


def test_error_codes_are_zookeepers() -> None:
    assert {code.name: int(code) for code in ErrorCode} == _pairs(ERROR_CODES)


def test_event_types_states_modes_and_xids_are_zookeepers() -> None:
    assert [int(t) for t in codes.EventType] == [-1, 1, 2, 3, 4, 5, 6, 7]
    assert {s.name: int(s) for s in codes.KeeperState} == {
        "UNKNOWN": -1, "DISCONNECTED": 0, "NO_SYNC_CONNECTED": 1, "SYNC_CONNECTED": 3, "AUTH_FAILED": 4,
        "CONNECTED_READ_ONLY": 5, "SASL_AUTHENTICATED": 6, "EXPIRED": -112, "CLOSED": 7,
    }  # fmt: skip
    assert [int(m) for m in codes.CreateMode] == [0, 1, 2, 3, 4, 5, 6]
    assert [m.name for m in codes.CreateMode if m.is_ephemeral] == ["EPHEMERAL", "EPHEMERAL_SEQUENTIAL"]
    assert [int(m) for m in codes.CreateMode if m.is_sequential] == [2, 3, 6]
    assert [int(m) for m in codes.CreateMode if m.is_ttl] == [5, 6]
    assert [int(m) for m in codes.CreateMode if m.is_container] == [4]
    assert (codes.AddWatchMode.PERSISTENT, codes.AddWatchMode.PERSISTENT_RECURSIVE) == (0, 1)
    assert [int(t) for t in codes.WatcherType] == [1, 2, 3, 4, 5]
    assert codes.Perms.ALL == 31 and codes.Perms.READ | codes.Perms.ADMIN == 17
    assert (codes.NOTIFICATION_XID, codes.PING_XID, codes.AUTH_XID, codes.SET_WATCHES_XID) == (-1, -2, -4, -8)


def test_every_embedzk_error_maps_to_its_own_code() -> None:
    classes = [
        obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, errors.EmbedZKError)
    ]
    assert set(classes) == set(codes.ERROR_CODES)
    for cls in classes:
        assert codes.error_code(cls) == cls.code, cls.__name__
    assert codes.error_code(errors.NoNodeError("/a")) is ErrorCode.NONODE
    assert codes.error_code(errors.RolledBackError("x")) is ErrorCode.OK
    assert codes.error_code(errors.NotLeaderError("x")) is ErrorCode.CONNECTIONLOSS
    assert codes.error_code(errors.DecodeError("x")) is ErrorCode.MARSHALLINGERROR
    assert codes.error_code(KeyError("x")) is ErrorCode.SYSTEMERROR

    class Custom(errors.NodeExistsError):
        pass

    assert codes.error_code(Custom()) is ErrorCode.NODEEXISTS


def test_the_models_event_types_map_to_watcher_event_types() -> None:
    assert {t.name: codes.event_type_from_model(t).name for t in model.EventType} == {
        "CREATED": "NODE_CREATED",
        "DELETED": "NODE_DELETED",
        "CHANGED": "NODE_DATA_CHANGED",
        "CHILD": "NODE_CHILDREN_CHANGED",
        "NONE": "NONE",
    }


def test_requests_and_replies_cover_the_same_opcodes() -> None:
    assert set(REQUEST_BODIES) == set(RESPONSE_BODIES)
    assert set(REQUEST_BODIES) == set(OpCode) - {
        OpCode.NOTIFICATION, OpCode.CREATE_SESSION, OpCode.DELETE_CONTAINER, OpCode.ERROR
    }  # fmt: skip


# -- kazoo's serializers as an independent reference --------------------------------------------------------------

try:
    from kazoo.protocol import serialization as kz
    from kazoo.security import ACL as KazooACL
    from kazoo.security import Id as KazooId

    HAVE_KAZOO = True
except ImportError:  # pragma: no cover - kazoo is in the test extras
    HAVE_KAZOO = False

needs_kazoo = pytest.mark.skipif(not HAVE_KAZOO, reason="kazoo is not installed: `pip install kazoo` to compare")

PATHS = st.text(min_size=1, max_size=12).map(lambda s: "/" + s)
NAMES = st.text(max_size=12)
DATA = st.binary(max_size=30)
ACLS = st.lists(st.builds(lambda p, s, i: (p, s, i), st.integers(0, 31), NAMES, NAMES), max_size=3)
STATS = for_record(Stat)


def _null_if_empty(text: str) -> str | None:
    """kazoo writes an empty string as null."""
    return text or None


def _kazoo_request(xid: int, request: Any) -> bytes:
    """A request packet as kazoo's connection builds it."""
    return struct.pack(">ii", xid, request.type) + bytes(request.serialize())


@needs_kazoo
@FAST
@given(
    zxid=st.integers(0, LONG_MAX),
    timeout=st.integers(0, INT_MAX),
    session=st.integers(0, LONG_MAX),
    passwd=st.binary(min_size=16, max_size=16),
    read_only=st.booleans(),
)
def test_kazoos_connect_is_our_connect_request(
    zxid: int, timeout: int, session: int, passwd: bytes, read_only: bool
) -> None:
    sent = bytes(kz.Connect(0, zxid, timeout, session, passwd, read_only).serialize())
    ours = ConnectRequest(0, zxid, timeout, session, passwd, read_only)
    assert sent == ours.encode()
    assert decode_connect_request(sent) == ours


@needs_kazoo
@FAST
@given(response=for_record(ConnectResponse).filter(lambda r: r.passwd is not None))
def test_kazoo_reads_our_connect_response(response: ConnectResponse) -> None:
    read, offset = kz.Connect.deserialize(response.encode(), 0)
    assert (read.protocol_version, read.time_out, read.session_id, read.passwd, read.read_only) == (
        response.protocol_version,
        response.time_out,
        response.session_id,
        response.passwd,
        bool(response.read_only),
    )


@needs_kazoo
@FAST
@given(
    xid=st.integers(1, INT_MAX), path=PATHS, data=DATA, acls=ACLS, flags=st.integers(0, 6), version=PRIMITIVES["int"]
)
def test_kazoos_requests_decode_as_ours(
    xid: int, path: str, data: bytes, acls: list[tuple[int, str, str]], flags: int, version: int
) -> None:
    kazoo_acls = [KazooACL(perms, KazooId(scheme, ident)) for perms, scheme, ident in acls]
    our_acls = tuple(ACL(perms, Id(_null_if_empty(scheme), _null_if_empty(ident))) for perms, scheme, ident in acls)
    cases: list[tuple[Any, Any]] = [
        (kz.Create(path, data, kazoo_acls, flags), CreateRequest(path, data, our_acls, flags)),
        (kz.Create2(path, data, kazoo_acls, flags), CreateRequest(path, data, our_acls, flags)),
        (kz.Delete(path, version), DeleteRequest(path, version)),
        (kz.Exists(path, True), ExistsRequest(path, True)),
        (kz.GetData(path, False), GetDataRequest(path, False)),
        (kz.SetData(path, data, version), SetDataRequest(path, data, version)),
        (kz.GetACL(path), records.GetACLRequest(path)),
        (kz.SetACL(path, kazoo_acls, version), records.SetACLRequest(path, our_acls, version)),
        (kz.GetChildren(path, True), GetChildrenRequest(path, True)),
        (kz.GetChildren2(path, False), records.GetChildren2Request(path, False)),
        (kz.Sync(path), records.SyncRequest(path)),
        (
            kz.Reconfig("server.1=a:1:2", "", None, version),
            records.ReconfigRequest("server.1=a:1:2", None, None, version),
        ),
        (kz.SASL(data), records.GetSASLRequest(data)),
        (
            kz.Transaction(
                [kz.Create(path, data, kazoo_acls, flags), kz.Delete(path, version), kz.SetData(path, data, version),
                 kz.CheckVersion(path, version)]
            ),
            MultiRequest(
                (
                    MultiOp(OpCode.CREATE, CreateRequest(path, data, our_acls, flags)),
                    MultiOp(OpCode.DELETE, DeleteRequest(path, version)),
                    MultiOp(OpCode.SET_DATA, SetDataRequest(path, data, version)),
                    MultiOp(OpCode.CHECK, CheckVersionRequest(path, version)),
                )
            ),
        ),
    ]  # fmt: skip
    for kazoo_request, ours in cases:
        header = RequestHeader(xid, kazoo_request.type)
        assert decode_request(_kazoo_request(xid, kazoo_request)) == Request(header, ours)
        assert encode_request(header, ours)[4:] == _kazoo_request(xid, kazoo_request)
    # Requests kazoo sends with their own xids and no body, or with a text credential.
    assert decode_request(_kazoo_request(codes.PING_XID, kz.PingInstance)) == Request(RequestHeader(-2, 11), None)
    assert decode_request(_kazoo_request(xid, kz.CloseInstance)) == Request(RequestHeader(xid, -11), None)
    auth = _kazoo_request(codes.AUTH_XID, kz.Auth(0, "digest", "user:secret"))
    assert decode_request(auth) == Request(RequestHeader(-4, 100), AuthPacket(0, "digest", b"user:secret"))


@needs_kazoo
@FAST
@given(path=PATHS, data=DATA, stat=STATS, children=st.lists(NAMES.filter(bool), max_size=4), acls=ACLS)
def test_kazoo_reads_our_responses(
    path: str, data: bytes, stat: Stat, children: list[str], acls: list[tuple[int, str, str]]
) -> None:
    def body(record: JuteRecord) -> bytes:
        return record.encode()

    fields = dataclasses.astuple(stat)
    assert tuple(kz.GetData.deserialize(body(GetDataResponse(data, stat)), 0)[1]) == fields
    assert kz.GetData.deserialize(body(GetDataResponse(data, stat)), 0)[0] == data
    assert tuple(kz.SetData.deserialize(body(SetDataResponse(stat)), 0)) == fields
    assert tuple(kz.SetACL.deserialize(body(records.SetACLResponse(stat)), 0)) == fields
    if stat.czxid != -1:  # kazoo reads an exists Stat with czxid -1 as "no node"
        assert tuple(kz.Exists.deserialize(body(records.ExistsResponse(stat)), 0)) == fields
    assert kz.Create.deserialize(body(CreateResponse(path)), 0) == path
    created, created_stat = kz.Create2.deserialize(body(Create2Response(path, stat)), 0)
    assert (created, tuple(created_stat)) == (path, fields)
    assert kz.Sync.deserialize(body(records.SyncResponse(path)), 0) == path
    assert kz.GetChildren.deserialize(body(records.GetChildrenResponse(tuple(children))), 0) == children
    got_children, got_stat = kz.GetChildren2.deserialize(body(records.GetChildren2Response(tuple(children), stat)), 0)
    assert (got_children, tuple(got_stat)) == (children, fields)
    our_acls = tuple(ACL(perms, Id(scheme, ident)) for perms, scheme, ident in acls)
    got_acls, got_stat = kz.GetACL.deserialize(body(records.GetACLResponse(our_acls, stat)), 0)
    assert [(a.perms, a.id.scheme, a.id.id) for a in got_acls] == acls
    assert tuple(got_stat) == fields
    config, config_stat = kz.Reconfig.deserialize(body(GetDataResponse(data, stat)), 0)
    assert (config, tuple(config_stat)) == (data, fields)

    header, offset = kz.ReplyHeader.deserialize(encode_reply(ReplyHeader(3, 77, -110))[4:], 0)
    assert (header.xid, header.zxid, header.err, offset) == (3, 77, -110, 16)
    event, _ = kz.Watch.deserialize(encode_notification(WatcherEvent(4, 3, path))[4 + 16 :], 0)
    assert tuple(event) == (4, 3, path)

    multi = MultiResponse(
        (CreateResponse(path), DeleteResult(), SetDataResponse(stat), CheckResult(), ErrorResponse(-101))
    )
    results = kz.Transaction.deserialize(body(multi), 0)
    assert results[:2] == [path, True] and tuple(results[2]) == fields and results[3] is True
    assert type(results[4]).__name__ == "NoNodeError"


@needs_kazoo
def test_kazoo_reads_a_failed_multi_as_rolled_back_and_failing_results() -> None:
    failed = MultiResponse((ErrorResponse(0), ErrorResponse(-110), ErrorResponse(-2)))
    results = kz.Transaction.deserialize(failed.encode(), 0)
    assert [type(r).__name__ for r in results] == ["RolledBackError", "NodeExistsError", "RuntimeInconsistency"]
