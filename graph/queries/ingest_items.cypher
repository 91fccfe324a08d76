// $rows: [{id, title, year, genres, abstract}]
UNWIND $rows AS row
MERGE (i:Item {id: row.id})
SET i.title = row.title, i.year = row.year, i.genres = row.genres, i.abstract = row.abstract
