// Node and relationship counts, for status and the ingest tests.
RETURN
  COUNT { (:User) } AS users,
  COUNT { (:Item) } AS items,
  COUNT { (:Entity) } AS entities,
  COUNT { ()-[:RATED]->() } AS interactions,
  COUNT { (:Item)-[]->(:Entity) } AS triples,
  COUNT { (:Entity)-[]->(:Entity) } AS entity_facts
