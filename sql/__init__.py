"""The project's SQL, shipped as package data: etl/ (the ETL's models), results/ and views/ (the trainer's
results and the analysts' views, owned by the warehouse package), examples/ (analysts' queries)."""
