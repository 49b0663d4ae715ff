"""Result stores: the embedded default store (SQLite) and InfluxDB sinks."""
