// Hides an item from recommendations, or shows it again (rag_rec/live/). $item_id,
// $hidden (true/false). Returns whether it was hidden before; unknown item: no row.
MATCH (i:Item {id: $item_id})
WITH i, coalesce(i.hidden, false) AS was_hidden
SET i.hidden = $hidden
RETURN was_hidden
