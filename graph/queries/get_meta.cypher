// $key
MATCH (m:Meta {key: $key})
RETURN properties(m) AS meta
