#!/usr/bin/env python3
"""Generates transport/src/lengths/walk.rs: for each response we decode, a walk of its layout that checks
every array count against the bytes left, mirroring kafka-protocol's generated decoders line by line.

Why: kafka-protocol's `Array`/`CompactArray` decoders call `Vec::with_capacity(n)` with the count read
from the wire before reading any element, so a 20-byte response announcing 2^31 elements makes it
allocate gigabytes and abort the process. transport runs the walk first (see transport/src/lib.rs,
`check_lengths`) and refuses such a body; kafka-protocol then decodes only bodies whose every count
fits. The walk is a transcription of kafka-protocol's own decode functions (this script reads them
from the crate's source), so it reads every field kafka-protocol reads, in the same order, at the
same version, known tagged fields included.

Re-run it when kafka-protocol is upgraded (the version is in the generated header):

    python3 scripts/gen-length-walk.py && cargo fmt -p transport
"""
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "transport" / "src" / "lengths" / "walk.rs"

# (ApiKey variant, module of kafka-protocol's messages, top-level struct): every response transport's
# callers decode (group/src/wire.rs, fetch/src, admin/src/conn.rs and ApiVersions).
RESPONSES = [
    ("ApiVersions", "api_versions_response", "ApiVersionsResponse"),
    ("FindCoordinator", "find_coordinator_response", "FindCoordinatorResponse"),
    ("JoinGroup", "join_group_response", "JoinGroupResponse"),
    ("SyncGroup", "sync_group_response", "SyncGroupResponse"),
    ("Heartbeat", "heartbeat_response", "HeartbeatResponse"),
    ("OffsetFetch", "offset_fetch_response", "OffsetFetchResponse"),
    ("OffsetCommit", "offset_commit_response", "OffsetCommitResponse"),
    ("LeaveGroup", "leave_group_response", "LeaveGroupResponse"),
    ("Metadata", "metadata_response", "MetadataResponse"),
    ("DescribeGroups", "describe_groups_response", "DescribeGroupsResponse"),
    ("ListGroups", "list_groups_response", "ListGroupsResponse"),
    ("ListOffsets", "list_offsets_response", "ListOffsetsResponse"),
    ("Fetch", "fetch_response", "FetchResponse"),
    ("CreateTopics", "create_topics_response", "CreateTopicsResponse"),
    ("ConsumerGroupHeartbeat", "consumer_group_heartbeat_response", "ConsumerGroupHeartbeatResponse"),
    ("ConsumerGroupDescribe", "consumer_group_describe_response", "ConsumerGroupDescribeResponse"),
    ("SaslHandshake", "sasl_handshake_response", "SaslHandshakeResponse"),
    ("SaslAuthenticate", "sasl_authenticate_response", "SaslAuthenticateResponse"),
]

FIXED = {"Int8": 1, "Int16": 2, "Int32": 4, "Int64": 8, "UInt16": 2, "UInt32": 4, "Float64": 8,
         "Boolean": 1, "Uuid": 16}
# (walk call, minimum encoded size) of the length-prefixed leaves.
PREFIXED = {"String": ("r.string()", 2), "CompactString": ("r.compact_string()", 1),
            "Bytes": ("r.bytes()", 4), "CompactBytes": ("r.compact_bytes()", 1)}


def crate_dir():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT))
    for p in meta["packages"]:
        if p["name"] == "kafka-protocol":
            return pathlib.Path(p["manifest_path"]).parent, p["version"]
    sys.exit("kafka-protocol is not in the workspace's dependencies")


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def structs(source):
    """struct name -> {field: rust type}."""
    out = {}
    for m in re.finditer(r"^pub struct (\w+) \{\n(.*?)^\}", source, re.S | re.M):
        out[m.group(1)] = dict(re.findall(r"^    pub (\w+): (.+),$", m.group(2), re.M))
    return out


def decode_bodies(source):
    """struct name -> decode fn body lines, after the version check and before `Ok(Self {`."""
    out = {}
    for m in re.finditer(r"^impl Decodable for (\w+) \{\n(.*?)^\}", source, re.S | re.M):
        lines = m.group(2).splitlines()
        start = next(i for i, l in enumerate(lines) if "specified version not supported" in l) + 2
        end = next(i for i, l in enumerate(lines) if l.strip() == "Ok(Self {")
        body = []
        for line in lines[start:end]:
            # Join `x =\n    types::...;` into one line.
            if body and body[-1].rstrip().endswith("="):
                body[-1] = body[-1].rstrip() + " " + line.strip()
            else:
                body.append(line)
        out[m.group(1)] = body
    return out


def element(rust_type):
    """The struct inside Vec<..>, Option<..>, Option<Vec<..>>."""
    t = rust_type
    while True:
        m = re.fullmatch(r"(?:Vec|Option)<(.+)>", t)
        if not m:
            return t.split("::")[-1]
        t = m.group(1)


def leaf(expr, field, fields, mode):
    """A kafka-protocol decode expression -> a walk statement (mode "walk") or a size term ("min")."""
    m = re.fullmatch(r"types::(\w+)\.decode\(buf\)\?", expr)
    if m and m.group(1) in FIXED:
        n = FIXED[m.group(1)]
        return f"r.fixed({n})?;" if mode == "walk" else f"n += {n};"
    if m and m.group(1) in PREFIXED:
        call, n = PREFIXED[m.group(1)]
        return f"{call}?;" if mode == "walk" else f"n += {n};"
    m = re.fullmatch(r"types::Struct \{ version \}\.decode\(buf\)\?", expr)
    if m:
        s = snake(element(fields[field]))
        return f"walk_{s}(r, version)?;" if mode == "walk" else f"n += min_{s}(version);"
    m = re.fullmatch(r"types::OptionStruct \{ version \}\.decode\(buf\)\?", expr)
    if m:
        # A presence byte, then the struct when it is 1 (ConsumerGroupHeartbeat's assignment).
        s = snake(element(fields[field]))
        return f"if r.present()? {{ walk_{s}(r, version)?; }}" if mode == "walk" else "n += 1;"
    m = re.fullmatch(r"types::(Compact)?Array\(types::(\w+)(?: \{ version \})?\)\.decode\(buf\)\?",
                     expr)
    if m:
        compact, inner = m.group(1), m.group(2)
        method = "compact_array" if compact else "array"
        if mode == "min":
            return f"n += {1 if compact else 4};"
        if inner == "Struct":
            s = snake(element(fields[field]))
            return f"r.{method}(min_{s}(version), |r| walk_{s}(r, version))?;"
        if inner in FIXED:
            k = FIXED[inner]
            return f"r.{method}({k}, |r| r.fixed({k}))?;"
        if inner in PREFIXED:
            call, k = PREFIXED[inner]
            return f"r.{method}({k}, |r| {call})?;"
    raise SystemExit(f"unknown decode expression for field {field}: {expr}")


def transform(body, fields, mode):
    """kafka-protocol's decode body -> the walk's (or the minimum size's) body, line by line."""
    out = []
    field = None
    skip_depth = None  # brace depth at which a skipped block (the tagged-field loop in "min") ends
    depth = 0
    for raw in body:
        line = raw.strip()
        opens, closes = line.count("{"), line.count("}")
        if skip_depth is not None:
            depth += opens - closes
            if depth <= skip_depth:
                skip_depth = None
            continue
        if line in ("let mut unknown_tagged_fields = BTreeMap::new();",) or \
                line.startswith("unknown_tagged_fields.insert("):
            continue
        if re.fullmatch(r"let mut \w+ = [^;]*;", line):
            continue  # a tagged field's default
        m = re.fullmatch(r"let num_tagged_fields = types::UnsignedVarInt\.decode\(buf\)\?;", line)
        if m:
            out.append("let num_tagged_fields = r.uvarint()?;" if mode == "walk" else "n += 1;")
            continue
        if line == "for _ in 0..num_tagged_fields {" and mode == "min":
            skip_depth = depth
            depth += 1
            continue
        m = re.fullmatch(r"let (tag|size): u32 = types::UnsignedVarInt\.decode\(buf\)\?;", line)
        if m:
            out.append(f"let {m.group(1)}: u32 = r.uvarint()?;")
            continue
        if line == "let unknown_value = buf.try_get_bytes(size as usize)?;":
            out.append("r.skip(size as usize)?;")
            continue
        m = re.fullmatch(r"bail!\((.*)\);", line)
        if m:
            out.append(f"return Err(format!({m.group(1)}));" if mode == "walk" else "")
            continue
        m = re.fullmatch(r"let (\w+) = (types::.*);", line)
        if m:
            out.append(leaf(m.group(2), m.group(1), fields, mode))
            continue
        m = re.fullmatch(r"(\w+) = (types::.*);", line)
        if m:
            out.append(leaf(m.group(2), m.group(1), fields, mode))
            continue
        m = re.fullmatch(r"let (\w+) = (if .* \{)", line)
        if m:
            field = m.group(1)
            out.append(m.group(2))
            depth += 1
            continue
        if line.startswith("types::"):
            out.append(leaf(line, field, fields, mode))
            continue
        if re.fullmatch(r"(\} else )?if .* \{|\} else \{|\}|\};|for _ in 0\.\.num_tagged_fields \{|"
                        r"match tag \{|\d+ => \{|_ => \{", line):
            out.append(line.rstrip(";"))
            depth += opens - closes
            continue
        if "{" in line or "}" in line or "types::" in line or "buf" in line:
            raise SystemExit(f"unexpected line: {line}")
        # A default value for a field the version lacks: nothing to read.
    return out


def tidy(lines):
    """Drops blocks the transform left empty: `} else {` `}` and `if c {` `}`."""
    changed = True
    while changed:
        changed = False
        for i in range(len(lines) - 1):
            if lines[i] == "} else {" and lines[i + 1] == "}":
                lines[i:i + 2] = ["}"]
                changed = True
                break
            if re.fullmatch(r"(\} else )?if .* \{", lines[i]) and lines[i + 1] == "}" and \
                    not lines[i].startswith("}"):
                if i + 2 < len(lines) and lines[i + 2].startswith("} else"):
                    continue
                lines[i:i + 2] = []
                changed = True
                break
        lines[:] = [l for l in lines if l != ""]
    return lines


def main():
    crate, version = crate_dir()
    parts = [f"""// @generated by scripts/gen-length-walk.py from kafka-protocol {version}'s decoders: do not edit.
//
// For each response transport decodes, a walk over its layout at a given version that reads exactly
// what kafka-protocol's `decode` reads and checks every array count against the bytes left (each
// element taking at least its minimum encoded size), so that kafka-protocol's `Vec::with_capacity`
// of that count stays within the frame. `min_*` is a struct's smallest encoding at a version.
#![allow(clippy::all, dead_code, unused_variables, unused_mut)]

use super::Reader;
use kafka_protocol::messages::ApiKey;

type Walked = Result<(), String>;

/// Walks `body` (after the response header) as `api`'s response at `version`: `Ok` when every array
/// it announces fits in what follows; `None` for an API this module has no walk for.
pub(crate) fn walk(api: ApiKey, version: i16, body: &[u8]) -> Option<Walked> {{
    let r = &mut Reader::new(body);
    Some(match api {{
"""]
    for api, module, top in RESPONSES:
        parts.append(f"        ApiKey::{api} => {module}::walk_{snake(top)}(r, version),\n")
    parts.append("        _ => return None,\n    })\n}\n")
    for api, module, top in RESPONSES:
        source = (crate / "src" / "messages" / f"{module}.rs").read_text()
        defs, bodies = structs(source), decode_bodies(source)
        parts.append(f"\nmod {module} {{\n    use super::*;\n")
        for name in sorted(bodies):
            fields = defs[name]
            walk = tidy(transform(bodies[name], fields, "walk"))
            size = tidy(transform(bodies[name], fields, "min"))
            s = snake(name)
            vis = "pub(super) " if name == top else ""
            parts.append(f"\n    {vis}fn walk_{s}(r: &mut Reader<'_>, version: i16) -> Walked {{\n")
            parts.extend(f"        {l}\n" for l in walk)
            parts.append("        Ok(())\n    }\n")
            parts.append(f"\n    fn min_{s}(version: i16) -> usize {{\n        let mut n = 0;\n")
            parts.extend(f"        {l}\n" for l in size)
            parts.append("        n\n    }\n")
        parts.append("}\n")
    OUT.write_text("".join(parts))
    print(f"wrote {OUT.relative_to(ROOT)} from kafka-protocol {version}")


if __name__ == "__main__":
    main()
