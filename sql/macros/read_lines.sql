-- read_lines(file_path, line_ending, text_encoding): a text file's non-blank lines as (line_no, line).
-- Every loader reads through this macro so that each row keeps the line number it came from,
-- which is what error messages and rejected_rows report. The delimiter is a 4-byte control
-- sequence that no MovieLens line holds, so each line arrives whole and is split in SQL.
-- DuckDB preserves file order, so row_number() OVER () is the 1-based line number. read_csv has
-- already removed the line ending (LF or CRLF); blank lines arrive as NULL and are dropped here,
-- after numbering, so that the numbers stay true.
CREATE OR REPLACE TEMP MACRO read_lines(file_path, line_ending, text_encoding) AS TABLE
WITH numbered AS (
    SELECT row_number() OVER () AS line_no, line
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
        encoding = text_encoding
    )
)
SELECT
    line_no,
    -- A UTF-8 byte-order mark is not data (read as latin-1, its three bytes are 'ï»¿'). Only line 1 is
    -- trimmed: a trim of every line would cost more than reading the file.
    CASE WHEN line_no = 1 THEN ltrim(line, chr(65279) || 'ï»¿') ELSE line END AS line
FROM numbered
-- length() first: a long line is never blank, and skips the costlier trim().
WHERE line IS NOT NULL AND (length(line) > 8 OR trim(line) <> '');
