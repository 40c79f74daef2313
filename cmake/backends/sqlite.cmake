# Backend "sqlite": SQLite 3 for on-disk caches. Sets MINIGPT_BACKEND_LIBS (empty when absent).
set(MINIGPT_BACKEND_LIBS "")
find_package(SQLite3 QUIET)  # CMake's own FindSQLite3 (Debian libsqlite3-dev, vcpkg sqlite3)
if(TARGET SQLite::SQLite3)
  set(MINIGPT_BACKEND_LIBS SQLite::SQLite3)
endif()
