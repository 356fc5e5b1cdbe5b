# GPU tests exit 77 (skipped) when no CUDA device is visible or the build has no CUDA backend.
if(TEST test_cuda_fixtures)
  set_tests_properties(test_cuda_fixtures PROPERTIES SKIP_RETURN_CODE 77)
endif()
