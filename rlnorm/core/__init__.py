"""What a user of the policy classes needs: the norms, the SB3 policies that put them in, the noise probe, and
the envs and features extractors for image observations."""
