#!/usr/bin/env python3
"""Conformance check of a running ironchart server with FHIR clients we did not write.

    python3.11 -m venv /tmp/clientvenv
    /tmp/clientvenv/bin/pip install -r tests/clients/requirements.txt
    /tmp/clientvenv/bin/python3 tests/clients/fhir_client_check.py http://127.0.0.1:PORT/fhir TOKEN

The REST traffic goes through `fhirpy` (SyncFHIRClient: CRUD, its search query builder, paging
through `next` links, `_include`, `count()`, transaction Bundles).  Every JSON body the server
sends back is also parsed, in strict mode, with the R4 classes of smart-on-fhir's `fhirclient`
(`fhirclient.models.*`), and `as_json()` must give the same JSON back.

Each check is a plain function with asserts, run by a tiny runner.  The last line printed is
`N passed, M failed`; the exit status is 0 only when nothing failed.  The data it creates is
tagged with a random run id, so the script can run repeatedly against the same server.
"""

from __future__ import annotations

import datetime
import json
import sys
import traceback
import uuid

import requests
from fhirclient.models.bundle import Bundle as FcBundle
from fhirclient.models.capabilitystatement import CapabilityStatement as FcCapabilityStatement
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.observation import Observation as FcObservation
from fhirclient.models.operationoutcome import OperationOutcome as FcOperationOutcome
from fhirclient.models.patient import Patient as FcPatient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ID_SYSTEM = "urn:ironchart:client-check"
WEIGHT = "29463-7"  # Body weight
HEART_RATE = "8867-4"  # Heart rate

FC_CLASSES = {
    "Patient": FcPatient,
    "Observation": FcObservation,
    "Bundle": FcBundle,
    "CapabilityStatement": FcCapabilityStatement,
    "OperationOutcome": FcOperationOutcome,
}


# --------------------------------------------------------------------------------------------
# Recording every exchange (a `requests` response hook, passed through fhirpy's requests_config)
# --------------------------------------------------------------------------------------------


class Exchange:
    def __init__(self, response: requests.Response):
        self.method = response.request.method
        self.url = response.url
        self.status = response.status_code
        self.headers = response.headers
        self.text = response.text
        self.json = None
        self.json_error = None
        if response.content:
            try:
                self.json = json.loads(response.content.decode("utf-8"))
            except ValueError as e:  # not JSON at all
                self.json_error = str(e)

    def __repr__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


class Recorder:
    def __init__(self):
        self.exchanges: list[Exchange] = []

    def hook(self, response, *args, **kwargs):
        self.exchanges.append(Exchange(response))
        return response

    def mark(self) -> int:
        return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        return self.exchanges[mark:]

    def last(self) -> Exchange:
        assert self.exchanges, "no HTTP exchange recorded"
        return self.exchanges[-1]


# --------------------------------------------------------------------------------------------
# fhirclient helpers
# --------------------------------------------------------------------------------------------


def plain(data):
    """fhirpy hands out dict subclasses (resources, references, AttrDicts): make plain JSON."""
    return json.loads(json.dumps(data))


def fc_parse(data: dict):
    """Strict parse with the matching fhirclient R4 class (raises FHIRValidationError)."""
    data = plain(data)
    rt = data.get("resourceType")
    assert rt, f"no resourceType in {str(data)[:200]}"
    cls = FC_CLASSES.get(rt)
    if cls is not None:
        return cls(data, strict=True)
    obj = FHIRElementFactory.instantiate(rt, data)  # strict by default
    assert getattr(obj, "resource_type", None) == rt, f"fhirclient has no R4 class for {rt}"
    return obj


def json_diff(a, b, path="") -> list[str]:
    out = []
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return [f"{path or '<root>'}: {a!r:.80} != {b!r:.80}"]
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}.{k}: missing in server JSON")
            elif k not in b:
                out.append(f"{path}.{k}: dropped by fhirclient ({a[k]!r:.80})")
            else:
                out += json_diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items vs {len(b)}"]
        for i, (x, y) in enumerate(zip(a, b)):
            out += json_diff(x, y, f"{path}[{i}]")
    elif a != b:
        out.append(f"{path}: {a!r:.80} != {b!r:.80}")
    return out


def empty_values(data, path="") -> list[str]:
    """FHIR JSON never has empty objects, arrays or strings (R4 json.html; ele-1)."""
    out = []
    if isinstance(data, dict):
        if not data:
            out.append(path or "<root>")
        for k, v in data.items():
            if k == "div":
                continue
            out += empty_values(v, f"{path}.{k}")
    elif isinstance(data, list):
        if not data:
            out.append(path)
        for i, v in enumerate(data):
            out += empty_values(v, f"{path}[{i}]")
    elif isinstance(data, str) and data == "":
        out.append(path)
    return out


def strip_empty(data):
    """The JSON with empty arrays/objects removed (fhirclient drops them; reported separately)."""
    if isinstance(data, dict):
        d = {k: strip_empty(v) for k, v in data.items()}
        return {k: v for k, v in d.items() if v not in ({}, [])}
    if isinstance(data, list):
        return [strip_empty(v) for v in data]
    return data


def fc_roundtrip(data: dict):
    """Strict parse, then `as_json()` must give the same JSON back. Returns the model."""
    data = plain(data)
    model = fc_parse(data)
    back = model.as_json()
    diffs = json_diff(strip_empty(data), back)
    assert not diffs, f"{data.get('resourceType')} as_json() round trip differs: " + "; ".join(diffs[:8])
    return model


# --------------------------------------------------------------------------------------------
# The check runner
# --------------------------------------------------------------------------------------------


class Runner:
    def __init__(self):
        self.passed = 0
        self.failures: list[tuple[str, str]] = []

    def check(self, name: str, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            tb = traceback.extract_tb(e.__traceback__)
            where = next(
                (f"line {f.lineno}" for f in reversed(tb) if f.filename == __file__), "?"
            )
            msg = f"{type(e).__name__} ({where}): {e}"
            self.failures.append((name, msg))
            print(f"FAIL {name}\n     {msg}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name}", flush=True)


class Ctx(dict):
    """Shared state between checks; a missing key means an earlier check failed."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AssertionError(f"needs `{key}`, which an earlier failed check should have set") from None

    def __setattr__(self, key, value):
        self[key] = value


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} FHIR_BASE_URL TOKEN", file=sys.stderr)
        return 2
    base, token = argv[1].rstrip("/"), argv[2]

    rec = Recorder()
    cfg = {"timeout": 60, "hooks": {"response": [rec.hook]}}
    client = SyncFHIRClient(base, authorization=f"Bearer {token}", requests_config=cfg)
    anonymous = SyncFHIRClient(base, requests_config=cfg)
    run = Runner()
    c = Ctx()
    tag = uuid.uuid4().hex[:10]
    family = f"Checkfam{tag}"  # all the plain patients share this family name
    accented_family = f"Núñez{tag}"
    print(f"# ironchart client check against {base}, run tag {tag}", flush=True)

    def ident(n):
        return {"system": ID_SYSTEM, "value": f"{tag}-{n}"}

    # ---------------------------------------------------------------- CapabilityStatement --
    def capability_statement():
        cs = client.execute("metadata", method="get")
        assert rec.last().status == 200
        ctype = rec.last().headers.get("Content-Type", "")
        assert ctype.startswith("application/fhir+json"), f"Content-Type {ctype!r}"
        model = FcCapabilityStatement(plain(cs), strict=True)
        assert model.fhirVersion == "4.0.1", model.fhirVersion
        assert model.kind == "instance"
        assert any("json" in f for f in model.format), model.format
        rest = model.rest[0]
        assert rest.mode == "server"
        by_type = {r.type: r for r in rest.resource}
        for rt in ("Patient", "Observation"):
            assert rt in by_type, f"{rt} missing from rest.resource"
            codes = {i.code for i in by_type[rt].interaction}
            for code in ("read", "vread", "update", "delete", "history-instance", "create", "search-type"):
                assert code in codes, f"{rt} lacks interaction {code}"
        pnames = {p.name for p in by_type["Patient"].searchParam}
        assert {"family", "given", "name", "birthdate", "gender", "identifier"} <= pnames, pnames
        onames = {p.name for p in by_type["Observation"].searchParam}
        assert {"subject", "patient", "code", "date", "value-quantity"} <= onames, onames
        assert "Observation:subject" in (by_type["Observation"].searchInclude or [])
        system = {i.code for i in (rest.interaction or [])}
        assert {"transaction", "batch"} <= system, system
        c.capability = plain(cs)

    run.check("metadata: CapabilityStatement parses strictly with fhirclient R4", capability_statement)

    def capability_roundtrip():
        fc_roundtrip(c.capability)

    run.check("metadata: CapabilityStatement as_json() round trip", capability_roundtrip)

    def capability_types_are_r4():
        # every advertised type must be an R4 (4.0.1) resource, i.e. one fhirclient's R4 models know
        unknown = []
        for r in c.capability["rest"][0]["resource"]:
            obj = FHIRElementFactory.instantiate(r["type"], None)
            if getattr(obj, "resource_type", None) != r["type"]:
                unknown.append(r["type"])
        assert not unknown, f"CapabilityStatement advertises types that are not R4 4.0.1 resources: {unknown}"

    run.check("metadata: every rest.resource.type is an R4 resource type", capability_types_are_r4)

    def metadata_without_token():
        cs = anonymous.execute("metadata", method="get")
        assert cs["resourceType"] == "CapabilityStatement"

    run.check("metadata: readable without a token", metadata_without_token)

    def no_token_refused():
        try:
            anonymous.resources("Patient").limit(1).fetch()
        except AuthorizationError:
            assert rec.last().status == 401
            www = rec.last().headers.get("WWW-Authenticate", "")
            assert www.lower().startswith("bearer"), f"WWW-Authenticate {www!r}"
        else:
            raise AssertionError("search without a token succeeded")
        forged = SyncFHIRClient(base, authorization=f"Bearer {token}x", requests_config=cfg)
        try:
            forged.get("Patient", "does-not-matter")
        except AuthorizationError:
            assert rec.last().status == 401
        else:
            raise AssertionError("a read with a wrong token succeeded")

    run.check("auth: no token or a wrong token is refused with 401", no_token_refused)

    # ---------------------------------------------------------------------------- create --
    patient_specs = [
        # (n, given, birthDate, gender)
        (1, ["Alice"], "1950-03-01", "female"),
        (2, ["Bob"], "1975-07-15", "male"),
        (3, ["Carol"], "1980-01-01", "female"),
        (4, ["Dave"], "1985-12-31", "male"),
        (5, ["Erin"], "1992-06-10", "female"),
        (6, ["Frank"], "2001-02-28", "other"),
        (7, ["Grace"], "1980-06-15", "unknown"),
    ]

    def create_patients():
        c.patients = {}
        for n, given, birth, gender in patient_specs:
            p = client.resource(
                "Patient",
                identifier=[ident(n)],
                active=True,
                name=[{"use": "official", "family": family, "given": given}],
                birthDate=birth,
                gender=gender,
            )
            m = rec.mark()
            p.save()
            ex = rec.since(m)[-1]
            assert ex.method == "POST" and ex.status == 201, ex
            assert p.id, "no id assigned"
            assert p["meta"]["versionId"] == "1", p.get("meta")
            loc = ex.headers.get("Location", "")
            assert f"Patient/{p.id}/_history/1" in loc, f"Location {loc!r}"
            assert ex.headers.get("ETag") == 'W/"1"', f"ETag {ex.headers.get('ETag')!r}"
            model = fc_roundtrip(p)
            assert model.name[0].family == family and model.name[0].given == given
            assert model.birthDate.as_json() == birth and model.gender == gender
            assert model.identifier[0].system == ID_SYSTEM and model.identifier[0].value == f"{tag}-{n}"
            c.patients[n] = p

    run.check("create: 7 Patients via fhirpy save() (201, Location, ETag, meta.versionId 1)", create_patients)

    def create_accented():
        p = client.resource(
            "Patient",
            identifier=[ident("accent")],
            name=[{"use": "official", "family": accented_family, "given": ["José", "María"]}],
            birthDate="1990-05-05",
            gender="male",
        )
        p.save()
        model = fc_roundtrip(p)
        assert model.name[0].family == accented_family, model.name[0].family
        assert model.name[0].given == ["José", "María"], model.name[0].given
        again = fc_roundtrip(client.get("Patient", p.id))
        assert again.name[0].family == accented_family
        c.accented = p

    run.check("create: Patient with accented names keeps UTF-8 intact", create_accented)

    def create_observations():
        c.observations = {}  # (patient n, code) -> resource
        start = datetime.datetime(2024, 3, 1, 8, 30, tzinfo=datetime.timezone.utc)
        for i, (n, patient) in enumerate(sorted(c.patients.items())):
            for code, display, value, unit, ucum in (
                (WEIGHT, "Body weight", 60.5 + 3 * i, "kg", "kg"),
                (HEART_RATE, "Heart rate", 60 + 4 * i, "beats/minute", "/min"),
            ):
                when = (start + datetime.timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                obs = client.resource(
                    "Observation",
                    status="final",
                    category=[{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }]}],
                    code={"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                    subject=patient,  # fhirpy turns a resource into {"reference": "Patient/id"}
                    effectiveDateTime=when,
                    valueQuantity={"value": value, "unit": unit, "system": UCUM, "code": ucum},
                )
                obs.save()
                assert obs.id and obs["meta"]["versionId"] == "1"
                model = fc_roundtrip(obs)
                assert model.subject.reference == f"Patient/{patient.id}", model.subject.reference
                assert model.code.coding[0].system == LOINC and model.code.coding[0].code == code
                assert model.valueQuantity.value == value, model.valueQuantity.value
                assert model.valueQuantity.code == ucum and model.valueQuantity.system == UCUM
                assert model.effectiveDateTime.as_json() == when, model.effectiveDateTime.as_json()
                c.observations[(n, code)] = obs

    run.check("create: 14 Observations (LOINC code, valueQuantity, effectiveDateTime, subject)", create_observations)

    def read_back():
        for n, p in c.patients.items():
            got = client.get("Patient", p.id)
            assert rec.last().headers.get("ETag") == 'W/"1"'
            assert plain(got) == plain(p), f"read of Patient/{p.id} differs from the create response"
            fc_roundtrip(got)
        obs = next(iter(c.observations.values()))
        got = client.reference("Observation", obs.id).to_resource()
        assert plain(got) == plain(obs)
        fc_roundtrip(got)

    run.check("read: client.get / reference.to_resource return what create returned", read_back)

    # ---------------------------------------------------------------------------- search --
    def ids(resources):
        return [r.id for r in resources]

    def pids(*ns):
        return {c.patients[n].id for n in ns}

    def search_family():
        found = client.resources("Patient").search(family=family).fetch_all()
        assert sorted(ids(found)) == sorted(pids(*c.patients)), ids(found)
        found = client.resources("Patient").search(family=family.lower()[:-2]).fetch_all()
        assert set(ids(found)) == pids(*c.patients), "family search is not case-insensitive prefix"
        for r in found:
            fc_roundtrip(r)

    run.check("search: .search(family=...) exact, lower-case and prefix", search_family)

    def search_accent():
        for q in (accented_family, f"nunez{tag}", f"NUNEZ{tag}"):
            found = client.resources("Patient").search(family=q).fetch_all()
            assert ids(found) == [c.accented.id], f"family={q}: {ids(found)}"
        found = client.resources("Patient").search(given="jose", family=accented_family).fetch_all()
        assert ids(found) == [c.accented.id], f"given=jose: {ids(found)}"
        found = client.resources("Patient").search(family__exact=accented_family).fetch_all()
        assert ids(found) == [c.accented.id], f"family:exact={accented_family}: {ids(found)}"
        found = client.resources("Patient").search(family__exact=f"nunez{tag}").fetch_all()
        assert ids(found) == [], f"family:exact=nunez…: {ids(found)} (exact must respect accents)"
        found = client.resources("Patient").search(name__contains=f"ÑEZ{tag}").fetch_all()
        assert ids(found) == [c.accented.id], f"name:contains: {ids(found)}"

    run.check("search: accent/case-insensitive string search, :exact, :contains", search_accent)

    def search_birthdate_prefixes():
        q = client.resources("Patient").search(family=family)
        cases = {
            "ge1980": (q.search(birthdate__ge="1980"), pids(3, 4, 5, 6, 7)),
            "lt1980": (q.search(birthdate__lt="1980"), pids(1, 2)),
            "gt1980-06": (q.search(birthdate__gt="1980-06"), pids(4, 5, 6)),
            "le1980-01-01": (q.search(birthdate__le="1980-01-01"), pids(1, 2, 3)),
            "eq1980": (q.search(birthdate="1980"), pids(3, 7)),
            "ne1980": (q.search(birthdate__ne="1980"), pids(1, 2, 4, 5, 6)),
            "ge1980&lt1990": (q.search(birthdate__ge="1980", **{"birthdate": "lt1990"}), pids(3, 4, 7)),
            "date object": (q.search(birthdate__ge=datetime.date(1992, 6, 10)), pids(5, 6)),
        }
        for label, (ss, want) in cases.items():
            got = ss.fetch_all()
            assert set(ids(got)) == want and len(got) == len(want), f"birthdate {label}: {sorted(ids(got))} != {sorted(want)}"

    run.check("search: birthdate prefixes via fhirpy (birthdate__ge=...)", search_birthdate_prefixes)

    def search_tokens():
        q = client.resources("Patient")
        got = q.search(identifier=f"{ID_SYSTEM}|{tag}-4").fetch_all()
        assert ids(got) == [c.patients[4].id], got
        got = q.search(family=family, gender="female").fetch_all()
        assert set(ids(got)) == pids(1, 3, 5), ids(got)
        got = q.search(family=family, gender__not="female").fetch_all()
        assert set(ids(got)) == pids(2, 4, 6, 7), ids(got)
        got = q.search(_id=c.patients[2].id).fetch_all()
        assert ids(got) == [c.patients[2].id]
        one = q.search(identifier=f"{ID_SYSTEM}|{tag}-5").get()  # fhirpy: exactly one match
        assert one.id == c.patients[5].id
        first = q.search(family=family).sort("-birthdate").first()
        assert first.id == c.patients[6].id, first.id

    run.check("search: token identifier=system|value, gender, :not, _id", search_tokens)

    def search_subject_code():
        p = c.patients[3]
        oq = client.resources("Observation")
        got = oq.search(subject=p).fetch_all()  # fhirpy renders the resource as Patient/id
        want = {c.observations[(3, WEIGHT)].id, c.observations[(3, HEART_RATE)].id}
        assert set(ids(got)) == want and len(got) == 2, ids(got)
        got = oq.search(subject=f"Patient/{p.id}", code=f"{LOINC}|{WEIGHT}").fetch_all()
        assert ids(got) == [c.observations[(3, WEIGHT)].id], ids(got)
        got = oq.search(patient=p.id, code=HEART_RATE).fetch_all()
        assert ids(got) == [c.observations[(3, HEART_RATE)].id], ids(got)
        for r in got:
            fc_roundtrip(r)
        got = oq.search(subject=p, code=f"http://snomed.info/sct|{WEIGHT}").fetch_all()
        assert ids(got) == [], f"code with the wrong system matched: {ids(got)}"

    run.check("search: Observation subject=, patient=, code=system|code", search_subject_code)

    def search_chain_quantity_date():
        oq = client.resources("Observation").search(subject__Patient__family=family, code=f"{LOINC}|{WEIGHT}")
        got = oq.fetch_all()
        want = {o.id for (n, code), o in c.observations.items() if code == WEIGHT}
        assert set(ids(got)) == want and len(got) == len(want), f"chained: {len(got)} of {len(want)}"
        # weights are 60.5, 63.5, 66.5, 69.5, 72.5, 75.5, 78.5 (kg)
        got = oq.search(value_quantity__gt=f"70|{UCUM}|kg").fetch_all()
        want = {c.observations[(n, WEIGHT)].id for n in (5, 6, 7)}
        assert set(ids(got)) == want, f"value-quantity=gt70|ucum|kg: {len(got)} hits"
        since = datetime.datetime(2024, 3, 5, 0, 0, tzinfo=datetime.timezone.utc)  # fhirpy formats it
        got = oq.search(date__ge=since).fetch_all()
        want = {c.observations[(n, WEIGHT)].id for n in (5, 6, 7)}
        assert set(ids(got)) == want, f"date=ge{since}: {len(got)} hits"

    run.check("search: chained subject:Patient.family, value-quantity gt, date ge (datetime)", search_chain_quantity_date)

    def search_sort():
        q = client.resources("Patient").search(family=family)
        got = q.sort("-birthdate").fetch_all()
        births = [r.birthDate for r in got]
        assert births == sorted(births, reverse=True) and len(births) == 7, births
        got = q.sort("birthdate").fetch_all()
        births = [r.birthDate for r in got]
        assert births == sorted(births) and len(births) == 7, births
        got = q.sort("gender", "-birthdate").fetch_all()
        keys = [(r.gender, r.birthDate) for r in got]
        want = sorted(keys, key=lambda k: (k[0], [-ord(ch) for ch in k[1]]))
        assert keys == want, keys

    run.check("search: .sort('-birthdate'), .sort('birthdate'), two keys", search_sort)

    def links_under_base():
        # fhirpy follows only `next` links under the base URL it was given (else ValueError
        # "possible security issue"); ironchart builds absolute URLs from --base-url.
        b = client.execute("Patient", method="get", params={"family": family, "_count": "2"})
        urls = [link["url"] for link in b.get("link", [])] + [e["fullUrl"] for e in b.get("entry", [])]
        assert any(link["relation"] == "next" for link in b.get("link", [])), "no next link for 7 matches, _count=2"
        bad = [u for u in urls if not u.startswith(base + "/")]
        assert not bad, (
            f"absolute URLs are not under the client's base {base}: {bad[0]} "
            "(start the server with --base-url matching the URL the clients use)"
        )

    run.check("search: Bundle links and fullUrls are under the client's base URL", links_under_base)

    def paging():
        mark = rec.mark()
        q = client.resources("Patient").search(family=family).sort("birthdate").limit(2)
        got = list(q)  # fhirpy follows the `next` links
        pages = [e for e in rec.since(mark) if e.method == "GET"]
        assert len(pages) == 4, f"{len(pages)} page requests for 7 matches with _count=2"
        for e in pages:
            entries = [x for x in e.json.get("entry", []) if x.get("search", {}).get("mode", "match") == "match"]
            assert len(entries) <= 2, f"page with {len(entries)} matches for _count=2"
            fc_roundtrip(e.json)
        got_ids = ids(got)
        assert len(got_ids) == len(set(got_ids)), f"duplicates across pages: {got_ids}"
        assert set(got_ids) == pids(*c.patients), "not every match was returned"
        births = [r.birthDate for r in got]
        assert births == sorted(births), f"sort order broken across pages: {births}"
        last = pages[-1].json
        assert not any(link["relation"] == "next" for link in last.get("link", [])), "last page has a next link"
        # and descending over pages of 3
        got = list(client.resources("Patient").search(family=family).sort("-birthdate").limit(3))
        assert [r.birthDate for r in got] == sorted(births, reverse=True), [r.birthDate for r in got]

    run.check("search: .limit(2) iterated over all pages, every match exactly once, in order", paging)

    def paging_observations():
        q = client.resources("Observation").search(subject__Patient__family=family).sort("-date", "code").limit(3)
        got = list(q)
        got_ids = ids(got)
        assert len(got_ids) == 14 and len(set(got_ids)) == 14, f"{len(got_ids)} ({len(set(got_ids))} distinct) of 14"
        assert set(got_ids) == {o.id for o in c.observations.values()}
        dates = [r.effectiveDateTime for r in got]
        assert dates == sorted(dates, reverse=True), dates

    run.check("search: 14 Observations in pages of 3 (chained, sorted -date), each once", paging_observations)

    def include():
        raw = (
            client.resources("Observation")
            .search(subject__Patient__family=family, code=f"{LOINC}|{WEIGHT}")
            .include("Observation", "subject")
            .fetch_raw()
        )
        fc_roundtrip(rec.last().json)
        entries = raw.get("entry", [])
        matches = [e for e in entries if e["resource"]["resourceType"] == "Observation"]
        included = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
        assert len(matches) == 7, f"{len(matches)} matches"
        assert all(e.get("search", {}).get("mode") == "match" for e in matches), "match entries need search.mode=match"
        assert all(e.get("search", {}).get("mode") == "include" for e in included), "included entries need search.mode=include"
        inc_ids = [e["resource"]["id"] for e in included]
        assert sorted(inc_ids) == sorted(pids(*c.patients)), f"included patients {inc_ids}"
        for e in entries:
            assert e.get("fullUrl", "").endswith(f"{e['resource']['resourceType']}/{e['resource']['id']}"), e.get("fullUrl")
        # fhirpy's fetch() keeps only the searched type
        assert len(client.resources("Observation").search(subject__Patient__family=family, code=WEIGHT)
                   .include("Observation", "subject").fetch()) == 7

    run.check("search: .include('Observation', 'subject') adds each Patient once (mode include)", include)

    def include_paged():
        q = (client.resources("Observation").search(subject__Patient__family=family)
             .include("Observation", "subject").sort("date").limit(4))
        mark = rec.mark()
        got = list(q)
        assert len(got) == 14 and len(set(ids(got))) == 14, f"{len(got)} observations"
        for e in [x for x in rec.since(mark) if x.method == "GET"]:
            entries = e.json.get("entry", [])
            subjects = {x["resource"]["subject"]["reference"] for x in entries if x["resource"]["resourceType"] == "Observation"}
            inc = {f"Patient/{x['resource']['id']}" for x in entries if x["resource"]["resourceType"] == "Patient"}
            assert subjects <= inc, f"page lacks included subjects: {subjects - inc}"

    run.check("search: _include on every page while paging", include_paged)

    def revinclude():
        raw = client.resources("Patient").search(_id=c.patients[1].id).revinclude("Observation", "subject").fetch_raw()
        fc_roundtrip(rec.last().json)
        types = sorted(e["resource"]["resourceType"] for e in raw.get("entry", []))
        assert types == ["Observation", "Observation", "Patient"], types

    run.check("search: .revinclude('Observation', 'subject')", revinclude)

    def fhirpy_count():
        # fhirpy's count() asks for `_count=0&_totalMethod=count` and reads Bundle.total; R4
        # search.html#count: _count=0 is treated the same as _summary=count.
        n = client.resources("Patient").search(family=family).count()
        fc_roundtrip(rec.last().json)
        assert n == 7, f"count() = {n}"
        assert client.resources("Observation").search(subject__Patient__family=family).count() == 14

    def fhirpy_count_guarded():
        try:
            fhirpy_count()
        except KeyError as e:
            ex = rec.last()
            raise AssertionError(
                f"{ex.method} {ex.url} -> {ex.status} has no Bundle.total ({e}); body: {ex.text[:300]}"
            ) from None

    run.check("search: fhirpy .count() (_count=0 must report Bundle.total)", fhirpy_count_guarded)

    def summary_count():
        b = client.execute("Patient", method="get", params={"family": family, "_summary": "count"})
        fc_roundtrip(b)
        assert b["type"] == "searchset" and b.get("total") == 7, b
        assert not [e for e in b.get("entry", []) if e.get("search", {}).get("mode") == "match"], "_summary=count returned matches"
        b = client.execute("Patient", method="get", params={"family": family, "_total": "accurate", "_count": "2"})
        fc_roundtrip(b)
        assert b.get("total") == 7, b.get("total")
        assert len(b.get("entry", [])) == 2

    run.check("search: _summary=count and _total=accurate report Bundle.total", summary_count)

    def post_search():
        b = client.execute("Patient/_search", method="post", params={"family": family, "_count": "100"})
        fc_roundtrip(b)
        assert b["type"] == "searchset" and len(b.get("entry", [])) == 7

    run.check("search: POST Patient/_search (params in the query string)", post_search)

    def unknown_param_lenient():
        b = client.execute("Patient", method="get", params={"family": family, "nonexistent-param": "x"})
        fc_roundtrip(b)
        matches = [e for e in b.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
        assert len(matches) == 7

    run.check("search: unknown parameter is ignored in lenient mode", unknown_param_lenient)

    # ------------------------------------------------------------------- update & history --
    def update():
        p = c.patients[2]
        p["telecom"] = [{"system": "phone", "value": "+1 555 0102", "use": "home"}]
        p["name"][0]["given"] = ["Robert", "Bob"]
        m = rec.mark()
        p.save()  # PUT Patient/id with the full resource (including the old meta)
        ex = rec.since(m)[-1]
        assert ex.method == "PUT" and ex.status == 200, ex
        assert p["meta"]["versionId"] == "2", p["meta"]
        assert ex.headers.get("ETag") == 'W/"2"', ex.headers.get("ETag")
        model = fc_roundtrip(p)
        assert model.telecom[0].value == "+1 555 0102" and model.name[0].given == ["Robert", "Bob"]
        got = client.get("Patient", p.id)
        assert got["meta"]["versionId"] == "2" and got["name"][0]["given"] == ["Robert", "Bob"]
        p["active"] = False
        p.save()
        assert p["meta"]["versionId"] == "3", p["meta"]
        assert p["meta"]["lastUpdated"] >= got["meta"]["lastUpdated"]

    run.check("update: save() after a change bumps meta.versionId 1 -> 2 -> 3", update)

    def refresh():
        p = client.get("Patient", c.patients[2].id)
        r = client.resource("Patient", **plain(p))
        r.refresh()  # fhirpy sends If-None-Match with the versionId
        assert rec.last().status in (200, 304), rec.last()
        assert r["meta"]["versionId"] == "3"

    run.check("read: fhirpy refresh() (If-None-Match)", refresh)

    def vread():
        p = c.patients[2]
        v1 = client.execute(f"Patient/{p.id}/_history/1", method="get")
        fc_roundtrip(v1)
        assert v1["meta"]["versionId"] == "1" and v1["name"][0]["given"] == ["Bob"]
        v2 = client.execute(f"Patient/{p.id}/_history/2", method="get")
        assert v2["meta"]["versionId"] == "2" and v2["name"][0]["given"] == ["Robert", "Bob"]

    run.check("vread: Patient/id/_history/1 and /2", vread)

    def stale_update():
        p = c.patients[2]
        body = plain(p)
        body["gender"] = "female"
        try:
            client._do_request("put", f"Patient/{p.id}", data=body, extra_headers={"If-Match": 'W/"1"'})
        except Exception:  # noqa: BLE001 - fhirpy maps 412 to MultipleResourcesFound
            assert rec.last().status in (409, 412), rec.last()
            fc_roundtrip(rec.last().json)
        else:
            raise AssertionError("update with a stale If-Match succeeded")
        assert client.get("Patient", p.id)["meta"]["versionId"] == "3"

    run.check("update: stale If-Match is refused (412) and changes nothing", stale_update)

    def history():
        p = c.patients[2]
        b = client.execute(f"Patient/{p.id}/_history", method="get")
        model = fc_roundtrip(b)
        assert model.type == "history", model.type
        entries = b["entry"]
        versions = [e["resource"]["meta"]["versionId"] for e in entries]
        assert versions == ["3", "2", "1"], f"history versions {versions} (newest first expected)"
        for e in entries:
            assert "request" in e and "response" in e, "history entries need request and response (bdl-3, bdl-4)"
            assert e["response"]["status"].startswith(("200", "201")), e["response"]
        assert entries[-1]["request"]["method"] == "POST" and entries[0]["request"]["method"] == "PUT"
        if "total" in b:
            assert b["total"] == 3
        b = client.execute("Patient/_history", method="get", params={"_count": "5"})
        fc_roundtrip(b)
        assert b["type"] == "history" and 1 <= len(b["entry"]) <= 5

    run.check("history: instance history newest first; type history", history)

    def history_paged():
        mark = rec.mark()
        b = client.execute(f"Patient/{c.patients[2].id}/_history", method="get", params={"_count": "1"})
        versions = [b["entry"][0]["resource"]["meta"]["versionId"]]
        while True:
            nxt = next((link["url"] for link in b.get("link", []) if link["relation"] == "next"), None)
            if not nxt:
                break
            b = client.execute(nxt, method="get")
            versions += [e["resource"]["meta"]["versionId"] for e in b.get("entry", [])]
            assert len(versions) < 10, "history paging does not end"
        assert versions == ["3", "2", "1"], versions
        for e in rec.since(mark):
            fc_roundtrip(e.json)

    run.check("history: paged with _count=1 following next links", history_paged)

    # ---------------------------------------------------------------------------- delete --
    def delete():
        p = c.patients[6]
        m = rec.mark()
        p.delete()
        assert rec.since(m)[-1].status in (200, 204), rec.since(m)[-1]
        try:
            client.get("Patient", p.id)
        except ResourceNotFound:
            ex = rec.last()
            assert ex.status == 410, f"read after delete: {ex.status}, expected 410 Gone"
            if ex.json is not None:
                fc_roundtrip(ex.json)
        else:
            raise AssertionError("read after delete succeeded")
        found = client.resources("Patient").search(family=family).fetch_all()
        assert p.id not in ids(found) and len(found) == 6, "deleted patient still found by search"
        b = client.execute(f"Patient/{p.id}/_history", method="get")
        fc_roundtrip(b)
        assert len(b["entry"]) == 2, len(b["entry"])
        gone = b["entry"][0]
        assert gone["request"]["method"] == "DELETE" and "resource" not in gone, gone
        assert gone["response"]["status"].startswith(("200", "204")), gone["response"]
        try:
            client.get("Patient", str(uuid.uuid4()))
        except ResourceNotFound:
            assert rec.last().status == 404, rec.last()
        else:
            raise AssertionError("read of an unknown id succeeded")

    run.check("delete: delete(); read -> 410 Gone; search skips it; history shows it; unknown id -> 404", delete)

    # ----------------------------------------------------------------------- transaction --
    def transaction():
        pu, ou = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": ou,
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": LOINC, "code": WEIGHT}]},
                        "subject": {"reference": pu},
                        "effectiveDateTime": "2024-04-01T10:00:00Z",
                        "valueQuantity": {"value": 81.2, "unit": "kg", "system": UCUM, "code": "kg"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
                {
                    "fullUrl": pu,
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [ident("tx")],
                        "name": [{"family": f"Txfam{tag}", "given": ["Zoë"]}],
                        "birthDate": "1999-09-09",
                        "gender": "female",
                    },
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        }
        FcBundle(bundle, strict=True)  # what we send is valid for fhirclient too
        m = rec.mark()
        resp = client.execute("/", method="post", data=bundle)
        ex = rec.since(m)[-1]
        assert ex.status == 200, ex
        fc_roundtrip(resp)
        assert resp["type"] == "transaction-response", resp["type"]
        assert len(resp["entry"]) == 2
        for e in resp["entry"]:
            assert e["response"]["status"].startswith("201"), e["response"]
        obs_loc, pat_loc = (e["response"]["location"] for e in resp["entry"])
        assert obs_loc.startswith("Observation/") and "/_history/1" in obs_loc, obs_loc
        assert pat_loc.startswith("Patient/") and "/_history/1" in pat_loc, pat_loc
        pid, oid = pat_loc.split("/")[1], obs_loc.split("/")[1]
        obs = client.get("Observation", oid)
        fc_roundtrip(obs)
        assert obs["subject"]["reference"] == f"Patient/{pid}", obs["subject"]
        pat = client.get("Patient", pid)
        assert pat["name"][0]["given"] == ["Zoë"]
        got = client.resources("Observation").search(subject__Patient__family=f"Txfam{tag}").fetch_all()
        assert ids(got) == [oid]

    run.check("transaction: client.execute('/', post) with urn:uuid references resolved", transaction)

    def batch():
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": f"Patient/{c.patients[1].id}"}},
                {"request": {"method": "GET", "url": f"Patient?family={family}&_count=1"}},
                {"request": {"method": "GET", "url": f"Patient/{uuid.uuid4()}"}},
            ],
        }
        resp = client.execute("", method="post", data=bundle)
        fc_roundtrip(resp)
        assert resp["type"] == "batch-response"
        statuses = [e["response"]["status"].split()[0] for e in resp["entry"]]
        assert statuses == ["200", "200", "404"], statuses
        assert resp["entry"][0]["resource"]["id"] == c.patients[1].id
        assert resp["entry"][1]["resource"]["resourceType"] == "Bundle"

    run.check("batch: reads and a search in one batch; a missing id fails alone", batch)

    def bad_transaction_rolls_back():
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                 "resource": {"resourceType": "Patient", "name": [{"family": f"Rollback{tag}"}]},
                 "request": {"method": "POST", "url": "Patient"}},
                {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                 "resource": {"resourceType": "Observation", "status": "not-a-status",
                              "code": {"text": "x"}},
                 "request": {"method": "POST", "url": "Observation"}},
            ],
        }
        try:
            client.execute("/", method="post", data=bundle)
        except OperationOutcome as e:
            assert 400 <= rec.last().status < 500, rec.last()
            fc_roundtrip(e.resource)
        else:
            raise AssertionError("an invalid transaction succeeded")
        assert client.resources("Patient").search(family=f"Rollback{tag}").fetch_all() == []

    run.check("transaction: an invalid entry fails the whole Bundle (nothing kept)", bad_transaction_rolls_back)

    # ---------------------------------------------------------------------------- errors --
    def invalid_create():
        try:
            client.resource("Patient", gender="robot", birthDate="1990-13-45").save()
        except OperationOutcome as e:
            assert rec.last().status in (400, 422), rec.last()
            model = fc_roundtrip(e.resource)
            assert model.issue and all(i.severity in ("error", "fatal") for i in model.issue)
        else:
            raise AssertionError("an invalid Patient was accepted")

    run.check("errors: invalid Patient -> 400/422 with an OperationOutcome", invalid_create)

    # ------------------------------------------------------------------- every response --
    def every_response_parses():
        problems = []
        for ex in rec.exchanges:
            if ex.status in (204, 304) and not ex.text:
                continue  # no body by design (fhirpy refresh() gets 304 Not Modified)
            if ex.json is None:
                problems.append(f"{ex}: body is not JSON ({ex.json_error or 'empty'})")
                continue
            ctype = ex.headers.get("Content-Type", "")
            if not ctype.startswith("application/fhir+json"):
                problems.append(f"{ex}: Content-Type {ctype!r}")
            try:
                fc_parse(ex.json)
            except (FHIRValidationError, Exception) as e:  # noqa: BLE001
                problems.append(f"{ex}: fhirclient strict parse failed: {str(e)[:300]}")
        assert not problems, f"{len(problems)} of {len(rec.exchanges)} responses:\n     " + "\n     ".join(problems[:10])

    run.check("all responses: JSON bodies parse strictly with fhirclient R4 models", every_response_parses)

    def no_empty_values():
        problems = []
        seen = set()
        for ex in rec.exchanges:
            if ex.json is None:
                continue
            paths = empty_values(ex.json)
            if paths:
                key = (ex.method, ex.url.split("?")[0], tuple(paths[:3]))
                if key not in seen:
                    seen.add(key)
                    problems.append(f"{ex}: {len(paths)} empty values, e.g. {', '.join(paths[:3])}")
        assert not problems, "FHIR JSON must not contain empty arrays/objects/strings:\n     " + "\n     ".join(problems[:10])

    run.check("all responses: no empty arrays, objects or strings (R4 JSON rules)", no_empty_values)

    # ----------------------------------------------------------------------------- done --
    if run.failures:
        print()
        print("Failures:")
        for name, msg in run.failures:
            print(f"- {name}\n  {msg}")
    print(f"{run.passed} passed, {len(run.failures)} failed")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
