"""The SQL models in sql/, in the order they run (each builds one table from those before it)."""

from __future__ import annotations

from pathlib import Path

from etl.layouts import Layout
from warehouse.sql import ETL_DIR


def models_for(layout: Layout) -> list[Path]:
    """The model files that build the warehouse for ``layout``, in dependency order."""
    staging = layout.staging
    users = f"staging/{staging}/stg_users.sql" if layout.has_users_file else "staging/no_users/stg_users.sql"
    names = [
        "macros/read_lines.sql",
        "macros/whole_number.sql",
        "macros/split_parts.sql",
        "seeds/occupations.sql",
        *(["staging/ml100k/stg_genres.sql"] if "genres" in layout.files else []),
        f"staging/{staging}/stg_movies.sql",
        users,
        "staging/ratings_lines.sql",
        "staging/stg_ratings.sql",
        "intermediate/int_movies_checked.sql",
        "intermediate/int_users_checked.sql",
        "intermediate/int_ratings_checked.sql",
        "core/movies.sql",
        "core/ratings.sql",
        "core/users.sql",
        "core/rejected_rows.sql",
        "core/user_index.sql",
        "core/movie_index.sql",
        "core/dataset.sql",
        "splits/rating_splits.sql",
        "splits/split_ratings.sql",
        "splits/splits.sql",
        "macros/matrix_rows.sql",
        "features/user_matrix.sql",
        "features/movie_matrix.sql",
    ]
    return [ETL_DIR / name for name in names]


def table_name(model: Path) -> str:
    """The table a model builds is named after its file (the macro file builds none)."""
    return model.stem
