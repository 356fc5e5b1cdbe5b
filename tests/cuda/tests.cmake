# GPU tests exit 77 (skipped) when no CUDA device is visible or the build has no CUDA backend.
foreach(t test_cuda_fixtures test_cuda_ops)
  if(TEST ${t})
    set_tests_properties(${t} PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endforeach()
