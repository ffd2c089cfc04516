/* placeholder until the PKCS#11 layer lands */
int kms_hsm_placeholder;
