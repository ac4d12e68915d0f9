/* The C program of `cargo xtask bench`'s start-up rows: SQLite (its amalgamation, from the
 * libsqlite3-sys crate) with a short main. It makes a table in memory, fills it, and prints
 * the count and sum of a query: little work, so that its time is mostly start-up.
 * Built by xtask/src/bench/startup.rs with clang for wasm32-wasi.
 */
#include <stdio.h>
#include "sqlite3.h"

static int print_row(void *unused, int columns, char **values, char **names) {
    (void)unused;
    for (int column = 0; column < columns; column++) {
        printf("%s=%s%s", names[column], values[column] ? values[column] : "NULL",
               column + 1 < columns ? " " : "\n");
    }
    return 0;
}

int main(void) {
    sqlite3 *database;
    char *error = NULL;
    if (sqlite3_open(":memory:", &database) != SQLITE_OK) {
        fprintf(stderr, "sqlite: cannot open: %s\n", sqlite3_errmsg(database));
        return 1;
    }
    const char *script =
        "CREATE TABLE numbers(value INTEGER, name TEXT);"
        "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter WHERE n < 1000)"
        "  INSERT INTO numbers SELECT n, printf('number %d', n) FROM counter;"
        "SELECT sqlite_version() AS version, count(*) AS rows, sum(value) AS total"
        "  FROM numbers WHERE name LIKE '%7%';";
    if (sqlite3_exec(database, script, print_row, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", error);
        sqlite3_free(error);
        return 1;
    }
    sqlite3_close(database);
    return 0;
}
