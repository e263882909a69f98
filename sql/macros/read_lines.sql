-- read_lines(file_path, line_ending, text_encoding): a text file as (line_no, line), one row per line.
-- Every loader reads through this macro so that each row keeps the line number it came from,
-- which is what error messages and rejected_rows report. The delimiter is a 4-byte control
-- sequence that no MovieLens line holds, so each line arrives whole and is split in SQL.
-- DuckDB preserves file order, so row_number() OVER () is the 1-based line number.
CREATE OR REPLACE TEMP MACRO read_lines(file_path, line_ending, text_encoding) AS TABLE
SELECT
    row_number() OVER () AS line_no,
    -- A UTF-8 byte-order mark and CR of CRLF endings are not part of the data.
    rtrim(ltrim(line, chr(65279)), chr(13)) AS line
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
);
