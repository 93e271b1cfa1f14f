# Deployment tests: the Kubernetes manifests checked against the real binaries (no cluster here).
# The compose deployment itself is run by scripts/test-deploy.sh (after ctest in scripts/test.sh).
add_test(NAME test_k8s_manifests
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_k8s_manifests.py
                 ${CMAKE_SOURCE_DIR} $<TARGET_FILE:psd> $<TARGET_FILE:pstrain>)
set_tests_properties(test_k8s_manifests PROPERTIES LABELS deploy TIMEOUT 120
                     ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
