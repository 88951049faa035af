# Writes a cohort from `ironchart generate` (NDJSON) as one transaction Bundle of PUTs per patient,
# plus one Bundle of the shared resources, for measuring Bundle imports against NDJSON.
# Usage: python3 ndjson_to_bundles.py NDJSON_DIR OUT_DIR
import json, os, sys, glob, collections
src, out = sys.argv[1], sys.argv[2]
by_patient = collections.defaultdict(list); shared = []
for f in glob.glob(os.path.join(src, "*.ndjson")):
    for line in open(f):
        r = json.loads(line)
        if r["resourceType"] == "Patient":
            by_patient[r["id"]].append(r); continue
        ref = None
        for k in ("subject", "patient"):
            v = r.get(k)
            if isinstance(v, dict) and v.get("reference", "").startswith("Patient/"):
                ref = v["reference"].split("/")[1]; break
        if ref: by_patient[ref].append(r)
        else: shared.append(r)
def bundle(rs):
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in rs]}
json.dump(bundle(shared), open(os.path.join(out, "0-shared.json"), "w"))
n = 0
for pid, rs in by_patient.items():
    json.dump(bundle(rs), open(os.path.join(out, f"{pid}.json"), "w")); n += len(rs)
print("bundles", len(by_patient), "resources", n + len(shared))
