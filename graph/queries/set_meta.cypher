// $key, $props: bookkeeping of the last ingest (dataset, fingerprint, split, complete).
MERGE (m:Meta {key: $key})
SET m += $props
