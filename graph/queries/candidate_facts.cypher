// Facts linking each candidate to the history: readable paths
// (candidate)-[relation]->(entity)<-[history_relation]-(history item), with what the
// explainer needs to choose among them (entity kind and degree, the user's rating).
// History items rated below $min_rating are left out: an explanation never says "like X"
// of a film the user disliked. Per candidate, the $per_candidate shared entities are
// kept, those reaching a history item rated >= $liked_rating (4 of 5 stars) first, then
// rarest first (a shared
// director says more than a shared genre); per entity, its $per_entity best-rated
// history items, so the explainer can still follow the scorer's attention.
// $item_ids (candidates), $history_item_ids, $ratings (history item id -> rating, may be
// empty: unknown ratings count as liked, at $top_rating), $min_rating, $liked_rating,
// $top_rating (3, 4, 5 on 1-5 stars: graph.rating_marks), $per_candidate, $per_entity.
MATCH (c:Item)-[r1]->(e:Entity)<-[r2]-(h:Item)
WHERE c.id IN $item_ids AND h.id IN $history_item_ids AND c <> h
WITH c, r1, e, r2, h, $ratings[h.id] AS rating
WHERE rating IS NULL OR rating >= $min_rating
ORDER BY coalesce(rating, $top_rating) DESC, h.id
WITH c, toLower(type(r1)) AS relation, e, collect({
  history_relation: toLower(type(r2)), history_item_id: h.id, history_title: h.title,
  history_rating: rating
})[..$per_entity] AS via
WITH c, relation, e, via, coalesce(via[0].history_rating, $top_rating) >= $liked_rating AS liked
ORDER BY c.id, liked DESC, e.degree ASC, e.id, relation
WITH c, collect({relation: relation, entity: e, via: via})[..$per_candidate] AS shared
UNWIND shared AS s
UNWIND s.via AS v
RETURN c.id AS candidate_id, c.title AS candidate_title, s.relation AS relation,
       s.entity.id AS entity_id, s.entity.name AS entity_name,
       s.entity.kind AS entity_kind, s.entity.degree AS entity_degree,
       v.history_relation AS history_relation, v.history_item_id AS history_item_id,
       v.history_title AS history_title, v.history_rating AS history_rating
