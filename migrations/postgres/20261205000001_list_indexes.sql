-- Lists filter by category, status or owner and page in (created_at, id)
-- order. With the filter column first and the page order after it, a page
-- reads only its own rows instead of sorting every match.
DROP INDEX entries_owner;
DROP INDEX entries_status;
CREATE INDEX entries_category_created ON entries (category, created_at, id);
CREATE INDEX entries_status_created ON entries (status, created_at, id);
CREATE INDEX entries_owner_created ON entries (owner_id, created_at, id);
