# Tokenizer tests (tests/text). Included by tests/CMakeLists.txt.
# The differential test needs reference output from the Hugging Face `tokenizers` Node binding:
# tokenizer_diff_gen writes it (node + `npm install` in tests/node_deps) before
# test_tokenizer_diff compares. Without node the comparison fails with a message saying so.
find_program(LM_NODE NAMES node nodejs)
set(LM_TOK_DIFF_DIR ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_diff)
if(LM_NODE)
  add_test(NAME tokenizer_diff_gen
           COMMAND ${LM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/text/gen_tokenizer_diff.js
                   ${CMAKE_SOURCE_DIR} ${LM_TOK_DIFF_DIR} 3000)
  set_tests_properties(tokenizer_diff_gen PROPERTIES FIXTURES_SETUP tok_diff)
  set_tests_properties(test_tokenizer_diff PROPERTIES FIXTURES_REQUIRED tok_diff)
endif()
set_property(TEST test_tokenizer_diff APPEND PROPERTY ENVIRONMENT "LMCORE_TOK_DIFF=${LM_TOK_DIFF_DIR}")
set_tests_properties(test_tokenizer_diff test_tokenizer_fixtures PROPERTIES TIMEOUT 600)
