# The README's benchmark table must be what bench/headlines.sh generates from the committed
# bench/results (so the README cannot drift from the results files).
add_test(NAME readme_headlines
  COMMAND bash ${CMAKE_SOURCE_DIR}/bench/headlines.sh --check ${CMAKE_SOURCE_DIR}/README.md)
set_tests_properties(readme_headlines PROPERTIES LABELS "docs" TIMEOUT 60)
