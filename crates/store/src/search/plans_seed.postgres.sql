-- A clinic's worth of rows for the PostgreSQL plan tests (see plans.rs): 2,000 patients, their
-- records in the proportions of the demo cohort, the shared resources they refer to, and the
-- index rows a search reads, with the spread of values real data has (a few categories and
-- statuses, hundreds of codes, dates over years, a thousand names). Then ANALYZE, so that the
-- planner — and above all the generic plans the read connections run, which know only these
-- statistics — chooses as it would in production. Written straight into the tables: the index
-- rows are what the plans depend on, not the bodies.
CREATE TEMP TABLE seed AS
SELECT (1000000 + row_number() OVER ())::BIGINT AS rid, t.name AS res_type, g::BIGINT AS k
FROM (VALUES
    ('Patient', 2000), ('Observation', 60000), ('Condition', 6000), ('Encounter', 8000),
    ('DiagnosticReport', 6000), ('DocumentReference', 4000), ('MedicationRequest', 6000),
    ('Immunization', 4000), ('Procedure', 4000), ('AllergyIntolerance', 2000),
    ('CarePlan', 2000), ('CareTeam', 2000), ('Goal', 2000), ('ServiceRequest', 4000),
    ('Coverage', 2000), ('Device', 2000), ('Practitioner', 400), ('Organization', 100),
    ('Location', 100), ('Medication', 300)
) AS t(name, n), generate_series(1, t.n) AS g;

INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted, patient, sensitivity)
SELECT rid, res_type,
       CASE WHEN res_type = 'Patient' THEN 'pat-' || k ELSE lower(res_type) || '-' || k END,
       1, 1600000000000 + rid, FALSE,
       CASE WHEN res_type = 'Patient' THEN 'pat-' || k
            WHEN res_type IN ('Practitioner', 'Organization', 'Location', 'Medication') THEN NULL
            ELSE 'pat-' || (k % 2000) END,
       CASE WHEN k % 50 = 0 THEN 1 ELSE 0 END
FROM seed;

INSERT INTO resource_versions (rid, version, last_updated, deleted, method, body, sensitivity)
SELECT rid, 1, 1600000000000 + rid, FALSE, 'PUT', '\x00'::bytea, 0 FROM seed;

-- The patient each record is about, under its compartment parameters; encounters, performers
-- and medications for the others.
INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url)
SELECT rid, res_type, p.param, 'Patient', 'pat-' || (k % 2000), 'Patient/pat-' || (k % 2000)
FROM seed, (VALUES ('subject'), ('patient')) AS p(param)
WHERE res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location', 'Medication');
INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url)
SELECT rid, res_type, 'encounter', 'Encounter', 'encounter-' || (k % 8000 + 1),
       'Encounter/encounter-' || (k % 8000 + 1)
FROM seed WHERE res_type IN ('Observation', 'Condition', 'DiagnosticReport', 'MedicationRequest', 'Procedure');
INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url)
SELECT rid, res_type, 'performer', 'Practitioner', 'practitioner-' || (k % 400 + 1),
       'Practitioner/practitioner-' || (k % 400 + 1)
FROM seed WHERE res_type IN ('Observation', 'DiagnosticReport', 'Procedure');
INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url)
SELECT rid, res_type, 'medication', 'Medication', 'medication-' || (k % 300 + 1),
       'Medication/medication-' || (k % 300 + 1)
FROM seed WHERE res_type = 'MedicationRequest';
INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url)
SELECT rid, res_type, 'general-practitioner', 'Practitioner', 'practitioner-' || (k % 400 + 1),
       'Practitioner/practitioner-' || (k % 400 + 1)
FROM seed WHERE res_type = 'Patient';

-- Tokens: a handful of categories and statuses, hundreds of codes.
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, 'category', 'http://terminology.hl7.org/CodeSystem/observation-category',
       (ARRAY['vital-signs', 'laboratory', 'social-history', 'survey', 'LAB', 'clinical-note',
              'problem-list-item', 'assess-plan', '108252007'])[k % 9 + 1]
FROM seed WHERE res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location', 'Medication', 'Device', 'Coverage', 'Goal');
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, 'code', 'http://loinc.org', (1000 + k % 400)::TEXT || '-' || (k % 7)::TEXT
FROM seed WHERE res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location');
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, 'status', 'http://hl7.org/fhir/status',
       (ARRAY['final', 'active', 'completed', 'finished', 'amended'])[k % 5 + 1]
FROM seed WHERE res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location');
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, p.param, 'http://hl7.org/fhir/codes', (ARRAY['active', 'resolved', 'order', 'plan'])[k % 4 + 1]
FROM seed, (VALUES ('clinical-status'), ('intent'), ('type')) AS p(param)
WHERE res_type IN ('Condition', 'MedicationRequest', 'DocumentReference', 'AllergyIntolerance');
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, 'gender', 'http://hl7.org/fhir/administrative-gender',
       (ARRAY['male', 'female'])[k % 2 + 1]
FROM seed WHERE res_type IN ('Patient', 'Practitioner');
INSERT INTO idx_token (rid, res_type, param, system, code)
SELECT rid, res_type, 'identifier',
       CASE WHEN res_type = 'Patient' THEN 'urn:mrn' ELSE 'http://hl7.org/fhir/sid/us-npi' END,
       (10000000 + k)::TEXT
FROM seed WHERE res_type IN ('Patient', 'Practitioner');

-- Dates over eight years.
INSERT INTO idx_date (rid, res_type, param, low, high)
SELECT rid, res_type, p.param, 1500000000000 + (k * 7919 % 2000) * 126000000,
       1500000000000 + (k * 7919 % 2000) * 126000000 + 86399999
FROM seed, (VALUES ('date'), ('onset-date'), ('issued'), ('authoredon')) AS p(param)
WHERE res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location', 'Medication');
INSERT INTO idx_date (rid, res_type, param, low, high)
SELECT rid, res_type, 'birthdate', -600000000000 + k * 600000000, -600000000000 + k * 600000000 + 86399999
FROM seed WHERE res_type = 'Patient';
INSERT INTO idx_ref_date (rid, res_type, param, target_id, low, high)
SELECT s.rid, s.res_type, d.param, 'pat-' || (s.k % 2000), d.low, d.high
FROM seed s JOIN idx_date d ON d.rid = s.rid
WHERE s.res_type NOT IN ('Patient', 'Practitioner', 'Organization', 'Location', 'Medication');

-- Names: a thousand families, prefixes of every word.
INSERT INTO idx_string (rid, res_type, param, value, exact)
SELECT rid, res_type, p.param, 'family' || (k % 1000), 'Family' || (k % 1000)
FROM seed, (VALUES ('name'), ('family'), ('given')) AS p(param)
WHERE res_type IN ('Patient', 'Practitioner');
INSERT INTO idx_string (rid, res_type, param, value, exact)
SELECT rid, res_type, 'name', 'clinic' || k, 'Clinic ' || k
FROM seed WHERE res_type IN ('Organization', 'Location');

-- Each index row carries its resource's patient, as the writers put it there.
UPDATE idx_reference i SET patient = r.patient FROM resources r WHERE r.rid = i.rid;
UPDATE idx_token i SET patient = r.patient FROM resources r WHERE r.rid = i.rid;
UPDATE idx_date i SET patient = r.patient FROM resources r WHERE r.rid = i.rid;
UPDATE idx_string i SET patient = r.patient FROM resources r WHERE r.rid = i.rid;

ANALYZE resources, resource_versions, idx_string, idx_token, idx_date, idx_reference, idx_uri, idx_ref_date, idx_quantity, idx_number;
