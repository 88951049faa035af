-- A reference written as a bare id (no type) keeps it as its target id, so that a search by that
-- id finds it through the index (before, it was matched by comparing every row's text).
UPDATE idx_reference
SET target_id = url
WHERE target_id IS NULL
  AND url IS NOT NULL
  AND url <> ''
  AND length(url) <= 64
  AND url NOT LIKE '%/%'
  AND url NOT LIKE '%:%'
  AND url NOT LIKE '%#%'
  AND url NOT LIKE '%|%'
  AND url NOT LIKE '% %';
