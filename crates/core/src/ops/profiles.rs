//! Profiles: create, edit, delete; each change is stored and handed to the
//! manager, which serves profile names as model names.

use super::{ErrorCode, NameRequest, OpError, Orchard, Profile, ProfileUpdate};

/// Every profile, by name.
pub async fn list_profiles(orchard: &Orchard) -> Result<Vec<Profile>, OpError> {
    stored(orchard)
}

/// The stored profiles; one that cannot be read is skipped and logged.
pub(super) fn stored(orchard: &Orchard) -> Result<Vec<Profile>, OpError> {
    Ok(orchard
        .store()
        .profiles()?
        .into_iter()
        .filter_map(
            |(name, body)| match serde_json::from_value::<Profile>(body) {
                Ok(profile) => Some(profile),
                Err(e) => {
                    tracing::warn!(profile = %name, error = %e, "skipping an unreadable profile");
                    None
                }
            },
        )
        .collect())
}

/// Hands the stored profiles to the manager.
pub(super) fn apply(orchard: &Orchard) -> Result<Vec<Profile>, OpError> {
    let profiles = stored(orchard)?;
    orchard.manager().set_profiles(profiles.clone());
    Ok(profiles)
}

/// Checks a profile: its fields, that its name is not a library model's, and
/// that its model is in the library.
fn check(orchard: &Orchard, profile: &mut Profile) -> Result<(), OpError> {
    profile.name = profile.name.trim().to_string();
    profile.model = profile.model.trim().to_string();
    profile
        .validate()
        .map_err(|message| OpError::new(ErrorCode::InvalidInput, message))?;
    if super::library::entry(orchard, &profile.name).is_ok() {
        return Err(OpError::new(
            ErrorCode::Conflict,
            format!(
                "name: {:?} is a model in the library; a profile needs a name of its own",
                profile.name
            ),
        ));
    }
    let model = super::library::entry(orchard, &profile.model).map_err(|_| {
        OpError::new(
            ErrorCode::InvalidInput,
            format!(
                "model: {:?} is not in the library; download it or add its folder first",
                profile.model
            ),
        )
    })?;
    profile.model = model.id;
    Ok(())
}

fn body(profile: &Profile) -> Result<serde_json::Value, OpError> {
    serde_json::to_value(profile).map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("cannot store the profile: {e}"),
        )
    })
}

fn conflict(e: orchard_store::StoreError) -> OpError {
    match e {
        orchard_store::StoreError::Invalid(message) => OpError::new(ErrorCode::Conflict, message),
        other => other.into(),
    }
}

/// Creates a profile; its name is a model name on the port from now on.
pub async fn create_profile(orchard: &Orchard, mut input: Profile) -> Result<Profile, OpError> {
    check(orchard, &mut input)?;
    orchard
        .store()
        .put_profile(None, &input.name, &body(&input)?)
        .map_err(conflict)?;
    apply(orchard)?;
    tracing::info!(profile = %input.name, model = %input.model, "profile created");
    Ok(input)
}

/// Replaces a profile (renaming it when the new one has another name).
pub async fn update_profile(orchard: &Orchard, input: ProfileUpdate) -> Result<Profile, OpError> {
    let mut profile = input.profile;
    check(orchard, &mut profile)?;
    orchard
        .store()
        .put_profile(Some(input.name.trim()), &profile.name, &body(&profile)?)
        .map_err(|e| match e {
            orchard_store::StoreError::NotFound(m) => OpError::new(ErrorCode::NotFound, m),
            other => conflict(other),
        })?;
    apply(orchard)?;
    Ok(profile)
}

/// Deletes a profile (its model stays in the library, and loaded if it is).
pub async fn delete_profile(
    orchard: &Orchard,
    input: NameRequest,
) -> Result<Vec<Profile>, OpError> {
    orchard.store().delete_profile(input.name.trim())?;
    apply(orchard)
}
