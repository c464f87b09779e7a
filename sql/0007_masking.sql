-- Desensitization (数据脱敏) of personal attributes for callers below their grade; the stored data is never altered.
-- name: 张三丰 -> 张**; id_number: first 6 and last 4 kept; phone: last 4 digits kept; hide: null.
CREATE FUNCTION geoservice.mask_value(value text, method text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN value IS NULL OR method = 'hide' THEN NULL
    WHEN method = 'name' THEN left(value, 1) || repeat('*', greatest(char_length(value) - 1, 1))
    WHEN method = 'id_number' THEN CASE WHEN char_length(value) > 10
        THEN left(value, 6) || repeat('*', char_length(value) - 10) || right(value, 4)
        ELSE repeat('*', char_length(value)) END
    WHEN method = 'phone' THEN CASE WHEN char_length(value) > 4
        THEN regexp_replace(left(value, char_length(value) - 4), '[0-9]', '*', 'g') || right(value, 4)
        ELSE repeat('*', char_length(value)) END
    ELSE NULL
END
$$;
