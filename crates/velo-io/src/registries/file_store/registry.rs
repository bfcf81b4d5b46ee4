//! Registered models, versions, aliases and version tags.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::registries::{ModelRegistry, ModelVersion, RegisteredModel, RegistryError, Result, Tag};

// The store and its shared helpers (io, invalid, now_ms, …).
use super::*;

impl FileStore {
    pub(super) fn model_dir(&self, name: &str) -> Result<PathBuf> {
        check_model_name(name)?;
        Ok(self.root.join("models").join(name))
    }

    pub(super) fn ensure_registered_model(&self, name: &str) -> Result<PathBuf> {
        let dir = self.model_dir(name)?;
        if dir.join("meta.yaml").is_file() {
            return Ok(dir);
        }
        let staged = self.staging_dir()?;
        let now = now_ms();
        let meta = ModelMeta {
            creation_timestamp: now,
            description: None,
            last_updated_timestamp: now,
            name: name.to_owned(),
        };
        self.write_new(
            &staged.join("meta.yaml"),
            &to_yaml(&meta)?,
            Durability::Synced,
        )?;
        // Losing the race to another process is fine: the model exists either way.
        self.publish_dir(&staged, &dir, Durability::Synced)?;
        Ok(dir)
    }

    pub(super) fn version_numbers(model_dir: &Path) -> Result<Vec<u64>> {
        let mut numbers = Vec::new();
        let entries = match fs::read_dir(model_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(numbers),
            Err(error) => return Err(RegistryError::io("list", model_dir, error)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", model_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(number) = name
                .strip_prefix("version-")
                .and_then(|n| n.parse::<u64>().ok())
                && entry.path().join("meta.yaml").is_file()
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    pub(super) fn aliases(model_dir: &Path) -> Result<Vec<(String, String)>> {
        Ok(Self::read_values(&model_dir.join("aliases"))?
            .into_iter()
            .map(|tag| (tag.key, tag.value.trim().to_owned()))
            .collect())
    }

    pub(super) fn version_from_dir(model_dir: &Path, number: u64) -> Result<ModelVersion> {
        let dir = model_dir.join(format!("version-{number}"));
        let meta: VersionMeta = read_yaml(&dir.join("meta.yaml"))?;
        let version = meta.version.to_string();
        let mut found = ModelVersion::default();
        found.aliases = Self::aliases(model_dir)?
            .into_iter()
            .filter(|(_, points_at)| *points_at == version)
            .map(|(alias, _)| alias)
            .collect();
        found.tags = Self::read_values(&dir.join("tags"))?;
        found.name = meta.name;
        found.version = version;
        found.creation_timestamp = meta.creation_timestamp;
        found.last_updated_timestamp = meta.last_updated_timestamp;
        found.source = meta.source;
        found.run_id = meta.run_id;
        found.status = meta.status;
        found.description = meta.description.unwrap_or_default();
        Ok(found)
    }
}

impl FileStore {
    /// Registers a version as [`ModelRegistry::create_model_version`] does, numbered after
    /// `floor` at least (a sandbox numbers its versions after production's).
    ///
    /// # Errors
    /// As [`ModelRegistry::create_model_version`].
    pub fn create_model_version_after(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
        floor: u64,
    ) -> Result<ModelVersion> {
        let model_dir = self.ensure_registered_model(name)?;
        for tag in tags {
            check_key("tag", &tag.key)?;
        }
        // Claim the next free number with a rename of a complete directory; a process that
        // loses a number to another one tries the next.
        for _ in 0..10_000 {
            let number = Self::version_numbers(&model_dir)?
                .last()
                .copied()
                .unwrap_or(0)
                .max(floor)
                + 1;
            let now = now_ms();
            let meta = VersionMeta {
                creation_timestamp: now,
                current_stage: "None".to_owned(),
                description: None,
                last_updated_timestamp: now,
                name: name.to_owned(),
                run_id: run_id.to_owned(),
                run_link: None,
                source: source.to_owned(),
                status: "READY".to_owned(),
                status_message: None,
                storage_location: source.to_owned(),
                user_id: None,
                version: number,
            };
            let staged = self.staging_dir()?;
            for tag in tags {
                let path = tag
                    .key
                    .split('/')
                    .fold(staged.join("tags"), |p, s| p.join(s));
                self.write_new(&path, tag.value.as_bytes(), Durability::Synced)?;
            }
            self.write_new(
                &staged.join("meta.yaml"),
                &to_yaml(&meta)?,
                Durability::Synced,
            )?;
            if self.publish_dir(
                &staged,
                &model_dir.join(format!("version-{number}")),
                Durability::Synced,
            )? {
                return Self::version_from_dir(&model_dir, number);
            }
        }
        Err(invalid(format!(
            "cannot allocate a version of model {name:?}"
        )))
    }

    /// Creates the registered model `name` when it does not exist yet.
    ///
    /// # Errors
    /// A bad name or a store that cannot be written.
    pub fn ensure_model(&self, name: &str) -> Result<()> {
        self.ensure_registered_model(name).map(|_| ())
    }
}

impl ModelRegistry for FileStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        self.create_model_version_after(name, source, run_id, tags, 0)
    }

    fn get_model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        let number = check_version(version)?;
        let model_dir = self.model_dir(name)?;
        if !model_dir
            .join(format!("version-{number}"))
            .join("meta.yaml")
            .is_file()
        {
            return Ok(None);
        }
        Self::version_from_dir(&model_dir, number).map(Some)
    }

    fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>> {
        let model_dir = self.model_dir(name)?;
        match Self::version_numbers(&model_dir)?.last() {
            Some(number) => Self::version_from_dir(&model_dir, *number).map(Some),
            None => Ok(None),
        }
    }

    fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let model_dir = self.model_dir(name)?;
        Self::version_numbers(&model_dir)?
            .into_iter()
            .map(|number| Self::version_from_dir(&model_dir, number))
            .collect()
    }

    fn list_registered_models(&self) -> Result<Vec<String>> {
        let dir = self.root.join("models");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(RegistryError::io("list", &dir, error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| RegistryError::io("list", &dir, error))?;
            if entry.path().join("meta.yaml").is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        let model_dir = self.model_dir(name)?;
        let meta_path = model_dir.join("meta.yaml");
        if !meta_path.is_file() {
            return Ok(None);
        }
        let meta: ModelMeta = read_yaml(&meta_path)?;
        let mut model = RegisteredModel::default();
        model.name = meta.name;
        model.creation_timestamp = meta.creation_timestamp;
        model.last_updated_timestamp = meta.last_updated_timestamp;
        model.description = meta.description.unwrap_or_default();
        model.tags = Self::read_values(&model_dir.join("tags"))?;
        model.aliases = Self::aliases(&model_dir)?
            .into_iter()
            .map(|(alias, version)| crate::registries::Alias { alias, version })
            .collect();
        Ok(Some(model))
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        if self.get_model_version(name, version)?.is_none() {
            return Err(RegistryError::NotFound {
                what: format!("model version {name}/{version} in {}", self.root.display()),
            });
        }
        let model_dir = self.model_dir(name)?;
        self.write_atomic(
            &model_dir.join("aliases").join(alias),
            version.as_bytes(),
            Durability::Synced,
        )
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        let path = self.model_dir(name)?.join("aliases").join(alias);
        self.inside(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(RegistryError::io("remove", &path, error)),
        }
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        let path = self.model_dir(name)?.join("aliases").join(alias);
        match fs::read_to_string(&path) {
            Ok(version) => self.get_model_version(name, version.trim()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RegistryError::io("read", &path, error)),
        }
    }

    fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        check_key("tag", key)?;
        let model_dir = self.model_dir(name)?;
        if !model_dir.join("meta.yaml").is_file() {
            return Err(RegistryError::NotFound {
                what: format!("registered model {name} in {}", self.root.display()),
            });
        }
        let path = key
            .split('/')
            .fold(model_dir.join("tags"), |p, s| p.join(s));
        self.write_atomic(&path, value.as_bytes(), Durability::Synced)
    }

    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        check_key("tag", key)?;
        let number = check_version(version)?;
        let dir = self.model_dir(name)?.join(format!("version-{number}"));
        if !dir.join("meta.yaml").is_file() {
            return Err(RegistryError::NotFound {
                what: format!("model version {name}/{version}"),
            });
        }
        let path = key.split('/').fold(dir.join("tags"), |p, s| p.join(s));
        self.write_atomic(&path, value.as_bytes(), Durability::Synced)
    }

    fn read_model_file(&self, version: &ModelVersion, relative: &str) -> Result<Vec<u8>> {
        crate::registries::server::read_local_source_file(&version.source, relative)
    }

    fn download_model(&self, version: &ModelVersion, into: &Path) -> Result<()> {
        crate::registries::server::copy_local_source(&version.source, into)
    }
}
