-- A label protects the versions before it, for good: each version keeps the highest sensitivity
-- its resource has had since it was written, so a later write that lowers the label (or
-- re-creates a deleted resource) opens none of them. Until now that protection came from the
-- resource's current label alone; copy it into the versions it covers.
UPDATE resource_versions
SET sensitivity = (SELECT r.sensitivity FROM resources r WHERE r.rid = resource_versions.rid)
WHERE sensitivity < (SELECT r.sensitivity FROM resources r WHERE r.rid = resource_versions.rid);
