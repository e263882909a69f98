-- Reading a text file line by line, keeping each line's number: error messages and rejected_rows report it.
-- depends_on:

-- file_lines(file_path, line_ending, text_encoding): every line of a text file, in file order, as (line).
-- The delimiter is a 4-byte control sequence that no MovieLens line holds, so each line arrives whole and
-- is split in SQL. read_csv has already removed the line ending (LF or CRLF); a blank line arrives as NULL.
CREATE OR REPLACE TEMP MACRO file_lines(file_path, line_ending, text_encoding) AS TABLE
SELECT line
FROM read_csv(
    file_path,
    columns = {'line': 'VARCHAR'},
    delim = e'\x1e\x1f\x1e\x1f',
    quote = '',
    escape = '',
    header = false,
    auto_detect = false,
    strict_mode = false,
    new_line = line_ending,
    encoding = text_encoding,
    -- DuckDB's default (2 MB) would fail the whole read on one long line, with a dump of it; read up to 16 MB so
    -- that the line is refused by the checks downstream, named by its number (or set aside: --max-bad-rows). The
    -- buffer stays at DuckDB's default size (32 MB, which would otherwise grow to 16 lines' worth).
    max_line_size = 16777216,
    buffer_size = 33554432
);

-- is_blank(line): a line with nothing but white space. length() first: a long line is never blank, and
-- skips the costlier trim().
CREATE OR REPLACE TEMP MACRO is_blank(line) AS line IS NULL OR (length(line) <= 8 AND trim(line) = '');

-- without_bom(line_no, line): the line without a UTF-8 byte-order mark, which is not data (read as
-- latin-1, its three bytes are 'ï»¿'). Only line 1 is trimmed: a trim of every line would cost more
-- than reading the file.
CREATE OR REPLACE TEMP MACRO without_bom(line_no, line) AS
    CASE WHEN line_no = 1 THEN ltrim(line, chr(65279) || 'ï»¿') ELSE line END;

-- read_lines(file_path, line_ending, text_encoding): a text file's non-blank lines as (line_no, line).
-- DuckDB preserves file order, so row_number() OVER () is the 1-based line number; blank lines are dropped
-- after numbering, so that the numbers stay true. (Numbering so reads the file on one thread: the large
-- ratings file is numbered by its stored order instead, see staging/ratings_lines.sql.)
CREATE OR REPLACE TEMP MACRO read_lines(file_path, line_ending, text_encoding) AS TABLE
WITH numbered AS (
    SELECT row_number() OVER () AS line_no, line
    FROM file_lines(file_path, line_ending, text_encoding)
)
SELECT line_no, without_bom(line_no, line) AS line
FROM numbered
WHERE NOT is_blank(line);
